//! What a cluster holds that decides what a run may do there, read without changing anything:
//! is Istio installed (and which revision), is there a plug-in CA, and which objects of the
//! manifests exist already, and who manages them. The plan is a pure function of these facts
//! (see [`super::plan`]), so the dry run and the run make the same decisions.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

use crate::istio_mesh::apply::Resolver;
use crate::istio_mesh::{CACERTS_SECRET, FIELD_MANAGER};
use crate::steps::ObjectRef;

/// The label istiod's Deployment carries, whatever the revision or the installer.
pub const ISTIOD_LABEL: (&str, &str) = ("app", "istiod");
/// The label of the sidecar injector's webhook configurations (revisions and tags alike).
pub const INJECTOR_LABEL: (&str, &str) = ("app", "sidecar-injector");
/// The revision label of istiod, its webhooks and namespaces that pick a revision.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The label of a revision tag's webhook configuration (`istio-revision-tag-<tag>`).
pub const TAG_LABEL: &str = "istio.io/tag";
/// The revision an unrevisioned install has.
pub const DEFAULT_REVISION: &str = "default";

/// What a run may rely on and must not break.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterFacts {
    /// Istio found on the cluster, if any.
    pub istio: Option<FoundIstio>,
    /// The plug-in CA of the namespace Istio would read it from, if there is one.
    pub cacerts: Option<ExistingCa>,
    /// Whether namespace `istio-system` exists.
    pub istio_namespace: bool,
    /// Every object of the manifests that exists already, and whether the harness manages it.
    pub objects: BTreeMap<ObjectRef, Existing>,
}

impl ClusterFacts {
    /// A cluster the run has just created: empty.
    pub fn fresh() -> Self {
        Self::default()
    }
}

/// An installed Istio: how it was found and the revision the run uses.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundIstio {
    /// What showed it (a Deployment, a webhook configuration, a CRD), for the dry run.
    pub evidence: Vec<String>,
    /// istiod's Deployment, `namespace/name`, when one was found.
    pub istiod: Option<(String, String)>,
    /// The revision the run injects with (`default` for an unrevisioned install).
    pub revision: String,
    /// Whether `istio-injection=enabled` reaches that revision (it is the default revision or
    /// a `default` tag points at it); otherwise namespaces need `istio.io/rev=<revision>`.
    pub default_injection: bool,
}

/// A `cacerts` secret that exists: its root, the only part the harness reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingCa {
    pub namespace: String,
    pub root_pem: String,
}

/// An object of the manifests that exists on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    /// The harness's field manager applied it (an earlier run).
    pub managed_by_harness: bool,
    /// Every field manager of the object, for the refusal's message.
    pub managers: Vec<String>,
}

/// Reads the facts. Only GET and LIST requests.
pub async fn probe(
    client: &Client,
    objects: &[Value],
    istio_namespace: &str,
) -> anyhow::Result<ClusterFacts> {
    let istio = find_istio(client).await?;
    let ca_namespace = istio
        .as_ref()
        .and_then(|i| i.istiod.as_ref().map(|(ns, _)| ns.clone()))
        .unwrap_or_else(|| istio_namespace.to_string());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ca_namespace);
    let cacerts = secrets
        .get_opt(CACERTS_SECRET)
        .await
        .with_context(|| format!("looking for Secret {ca_namespace}/{CACERTS_SECRET}"))?
        .map(|s| ExistingCa {
            namespace: ca_namespace.clone(),
            root_pem: secret_text(&s, crate::ca::ROOT_CERT_FILE),
        });
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let istio_namespace = namespaces
        .get_opt(istio_namespace)
        .await
        .with_context(|| format!("looking for Namespace {istio_namespace}"))?
        .is_some();
    let mut existing = BTreeMap::new();
    let mut resolver = Resolver::default();
    for object in objects {
        if let Some(found) = existing_object(client, &mut resolver, object).await? {
            existing.insert(ObjectRef::of(object), found);
        }
    }
    Ok(ClusterFacts {
        istio,
        cacerts,
        istio_namespace,
        objects: existing,
    })
}

fn secret_text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })
        .unwrap_or_default()
}

/// Istio counts as installed when any of these exists: a Deployment labelled `app=istiod` in
/// any namespace, a MutatingWebhookConfiguration labelled `app=sidecar-injector`, or a CRD of
/// an `*.istio.io` group. Whatever its health: an istiod mid-rollout is still somebody's mesh.
pub async fn find_istio(client: &Client) -> anyhow::Result<Option<FoundIstio>> {
    let selector = |(k, v): (&str, &str)| ListParams::default().labels(&format!("{k}={v}"));
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&selector(ISTIOD_LABEL))
        .await
        .context("listing Deployments labelled app=istiod")?
        .items;
    let webhooks = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&selector(INJECTOR_LABEL))
        .await
        .context("listing MutatingWebhookConfigurations labelled app=sidecar-injector")?
        .items;
    let crds: Vec<String> = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing CustomResourceDefinitions")?
        .items
        .into_iter()
        .filter(|c| c.spec.group.ends_with("istio.io"))
        .filter_map(|c| c.metadata.name)
        .collect();
    Ok(describe_istio(&deployments, &webhooks, &crds))
}

/// The decision of [`find_istio`] from what the lists returned (pure, for tests).
pub fn describe_istio(
    deployments: &[Deployment],
    webhooks: &[MutatingWebhookConfiguration],
    crds: &[String],
) -> Option<FoundIstio> {
    let mut evidence = Vec::new();
    let label = |labels: &Option<BTreeMap<String, String>>, key: &str| {
        labels.as_ref().and_then(|l| l.get(key)).cloned()
    };
    let mut istiods: Vec<(String, String, String)> = deployments
        .iter()
        .map(|d| {
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            let name = d.metadata.name.clone().unwrap_or_default();
            let rev = label(&d.metadata.labels, REVISION_LABEL)
                .unwrap_or_else(|| DEFAULT_REVISION.to_string());
            evidence.push(format!(
                "Deployment {ns}/{name} (app=istiod, revision `{rev}`)"
            ));
            (ns, name, rev)
        })
        .collect();
    istiods.sort();
    let mut default_tag = None;
    for w in webhooks {
        let name = w.metadata.name.clone().unwrap_or_default();
        evidence.push(format!(
            "MutatingWebhookConfiguration {name} (app=sidecar-injector)"
        ));
        if label(&w.metadata.labels, TAG_LABEL).as_deref() == Some(DEFAULT_REVISION) {
            default_tag = label(&w.metadata.labels, REVISION_LABEL);
        }
    }
    if let Some(crd) = crds.first() {
        evidence.push(format!(
            "{} CRD(s) of *.istio.io groups, e.g. {crd}",
            crds.len()
        ));
    }
    if evidence.is_empty() {
        return None;
    }
    // The revision `istio-injection=enabled` reaches: the default tag's, else the default one.
    let chosen = default_tag
        .as_ref()
        .and_then(|rev| istiods.iter().find(|(_, _, r)| r == rev))
        .or_else(|| istiods.iter().find(|(_, _, r)| r == DEFAULT_REVISION))
        .or_else(|| istiods.first());
    let revision = chosen
        .map(|(_, _, r)| r.clone())
        .or(default_tag.clone())
        .unwrap_or_else(|| DEFAULT_REVISION.to_string());
    let default_injection =
        revision == DEFAULT_REVISION || default_tag.as_deref() == Some(&revision);
    Some(FoundIstio {
        evidence,
        istiod: chosen.map(|(ns, name, _)| (ns.clone(), name.clone())),
        revision,
        default_injection,
    })
}

async fn existing_object(
    client: &Client,
    resolver: &mut Resolver,
    object: &Value,
) -> anyhow::Result<Option<Existing>> {
    let what = ObjectRef::of(object);
    let (group, version) = what
        .api_version
        .split_once('/')
        .unwrap_or(("", what.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &what.kind);
    // A kind the cluster does not serve (Istio's, before Istio) has no objects yet.
    let Ok((resource, caps)) = resolver.resolve(client, &gvk).await else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = match (&caps.scope, &what.namespace) {
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
    };
    let found = api
        .get_opt(&what.name)
        .await
        .with_context(|| format!("looking for {what}"))?;
    Ok(found.map(|o| {
        let managers: Vec<String> = o
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        Existing {
            managed_by_harness: managers.iter().any(|m| m == FIELD_MANAGER),
            managers,
        }
    }))
}

/// The PEM of a base64 string, as Secrets carry data in JSON.
pub fn decode_b64(text: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(ns: &str, name: &str, rev: Option<&str>) -> Deployment {
        let mut labels = json!({"app": "istiod"});
        if let Some(rev) = rev {
            labels["istio.io/rev"] = json!(rev);
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns, "labels": labels}}),
        )
        .unwrap()
    }

    fn webhook(name: &str, rev: &str, tag: Option<&str>) -> MutatingWebhookConfiguration {
        let mut labels = json!({"app": "sidecar-injector", "istio.io/rev": rev});
        if let Some(tag) = tag {
            labels["istio.io/tag"] = json!(tag);
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    #[test]
    fn nothing_found_is_no_istio() {
        assert_eq!(describe_istio(&[], &[], &[]), None);
    }

    #[test]
    fn a_revisioned_control_plane_is_istio_and_needs_the_revision_label() {
        let found = describe_istio(
            &[deployment("istio-system", "istiod-1-31", Some("1-31"))],
            &[webhook("istio-sidecar-injector-1-31", "1-31", None)],
            &["virtualservices.networking.istio.io".into()],
        )
        .unwrap();
        assert_eq!(found.revision, "1-31");
        assert!(!found.default_injection);
        assert_eq!(
            found.istiod,
            Some(("istio-system".into(), "istiod-1-31".into()))
        );
        assert_eq!(found.evidence.len(), 3);
    }

    #[test]
    fn the_default_tag_picks_the_revision_that_istio_injection_reaches() {
        let found = describe_istio(
            &[
                deployment("istio-system", "istiod-1-30", Some("1-30")),
                deployment("istio-system", "istiod-1-31", Some("1-31")),
            ],
            &[webhook(
                "istio-revision-tag-default",
                "1-31",
                Some("default"),
            )],
            &[],
        )
        .unwrap();
        assert_eq!(found.revision, "1-31");
        assert!(found.default_injection);
    }

    #[test]
    fn crds_alone_are_enough_to_leave_the_cluster_alone() {
        let found = describe_istio(&[], &[], &["gateways.networking.istio.io".into()]).unwrap();
        assert_eq!(found.istiod, None);
        assert!(found.evidence[0].contains("gateways.networking.istio.io"));
    }

    #[test]
    fn an_unrevisioned_istiod_in_another_namespace_is_the_default_revision() {
        let found = describe_istio(&[deployment("mesh-system", "istiod", None)], &[], &[]).unwrap();
        assert_eq!(found.revision, "default");
        assert!(found.default_injection);
        assert_eq!(found.istiod.unwrap().0, "mesh-system");
    }
}
