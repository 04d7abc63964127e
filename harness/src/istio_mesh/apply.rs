//! Writes to the cluster: the plan's applies (a create, a server-side apply, or a forced one for
//! objects the harness already manages or may adopt), each stage's VirtualService, and the
//! deletes of the teardown.
//!
//! Every server-side apply uses one field manager (`canary-harness`) and strict field
//! validation, so the API server refuses a field it does not know instead of dropping it.
//! Objects go in a fixed order: Namespaces, then CRDs, then the other Kubernetes objects, and
//! the Istio resources last, once their CRDs are Established (before that, discovery does not
//! know their kinds).

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective,
};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::FIELD_MANAGER;
use super::waits::{self, Check};
use crate::steps::ApplyHow;

/// The patch parameters of a forced server-side apply (objects the harness manages).
pub fn apply_params() -> PatchParams {
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.field_validation = Some(ValidationDirective::Strict);
    params
}

/// Sends one apply of the plan, as its `how` and `dry_run` say.
pub async fn send(client: &Client, apply: &crate::steps::Apply) -> anyhow::Result<()> {
    let what = &apply.object;
    let (api, name) = dynamic_api(client, &apply.body).await?;
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.field_validation = Some(ValidationDirective::Strict);
    params.dry_run = apply.dry_run;
    let verb = if apply.dry_run {
        "server-side dry run"
    } else {
        "server-side apply"
    };
    match apply.how {
        ApplyHow::Create => {
            let mut post = PostParams {
                dry_run: apply.dry_run,
                field_manager: Some(FIELD_MANAGER.to_string()),
            };
            post.dry_run = apply.dry_run;
            let object: DynamicObject = serde_json::from_value(apply.body.clone())
                .with_context(|| format!("{what} is not a Kubernetes object"))?;
            match api.create(&post, &object).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => bail!(
                    "{what} appeared on the cluster after the run was planned: the harness creates it only if nobody else did, so it stops here"
                ),
                Err(e) => return Err(e).with_context(|| format!("create of {what}")),
            }
        }
        ApplyHow::Apply => {
            api.patch(&name, &params, &Patch::Apply(&apply.body))
                .await
                .with_context(|| format!("{verb} of {what}"))?;
        }
        ApplyHow::Reapply | ApplyHow::Adopt => {
            params.force = true;
            api.patch(&name, &params, &Patch::Apply(&apply.body))
                .await
                .with_context(|| format!("{verb} of {what} (forced)"))?;
        }
    }
    if !apply.dry_run {
        tracing::info!("applied {what}");
    }
    Ok(())
}

/// Deletes an object; `false` when it was gone already.
pub async fn delete(client: &Client, object: &crate::steps::ObjectRef) -> anyhow::Result<bool> {
    let body = serde_json::json!({
        "apiVersion": object.api_version, "kind": object.kind,
        "metadata": {"name": object.name, "namespace": object.namespace},
    });
    let (api, name) = dynamic_api(client, &body).await?;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("deleting {object}")),
    }
}

/// The dynamic API of an object's kind and its name, by discovery of its group version.
async fn dynamic_api(
    client: &Client,
    object: &Value,
) -> anyhow::Result<(Api<DynamicObject>, String)> {
    let what = describe(object);
    let gvk = gvk_of(object).with_context(|| what.clone())?;
    let (resource, caps) = Resolver::default().resolve(client, &gvk).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .with_context(|| format!("{what} has no metadata.name"))?
        .to_string();
    let api: Api<DynamicObject> = match (&caps.scope, object["metadata"]["namespace"].as_str()) {
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// Where an object goes in the apply order (lower first).
fn rank(object: &Value) -> u8 {
    match (object["apiVersion"].as_str(), object["kind"].as_str()) {
        (_, Some("Namespace")) => 0,
        (_, Some("CustomResourceDefinition")) => 1,
        _ if is_istio(object) => 3,
        _ => 2,
    }
}

/// Whether the object is an Istio custom resource (`*.istio.io` group).
/// A Deployment's body with a new build: `image` on its first container (the one whose tag is
/// the subset's version) and `env` set on it, each variable replacing one of the same name.
pub fn with_new_build(
    deployment: &Value,
    image: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Value> {
    let mut body = deployment.clone();
    let container = body
        .pointer_mut("/spec/template/spec/containers/0")
        .filter(|c| c.is_object())
        .ok_or_else(|| anyhow::anyhow!("the Deployment has no container to give a new build"))?;
    container["image"] = Value::String(image.to_string());
    if !env.is_empty() {
        let mut vars: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
        for (name, value) in env {
            vars.retain(|v| v["name"].as_str() != Some(name));
            vars.push(serde_json::json!({"name": name, "value": value}));
        }
        container["env"] = Value::Array(vars);
    }
    Ok(body)
}

pub fn is_istio(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .is_some_and(|(group, _)| group.ends_with(".istio.io"))
}

/// The objects in apply order; objects of the same rank keep their file order.
pub fn ordered(objects: &[Value]) -> Vec<&Value> {
    let mut out: Vec<&Value> = objects.iter().collect();
    out.sort_by_key(|o| rank(o));
    out
}

/// `Kind namespace/name` (or `Kind name`), for logs and errors.
pub fn describe(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("?");
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn gvk_of(object: &Value) -> anyhow::Result<GroupVersionKind> {
    let api_version = object["apiVersion"]
        .as_str()
        .context("the object has no apiVersion")?;
    let kind = object["kind"].as_str().context("the object has no kind")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// The plural resource name of an Istio kind, which names its CRD (`<plural>.<group>`).
pub fn istio_plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    // English: a `y` after a consonant becomes `ies` (policy), after a vowel it stays (gateway).
    match lower.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{lower}s"),
    }
}

/// The CRDs the Istio objects need, e.g. `virtualservices.networking.istio.io`.
pub fn needed_crds(objects: &[Value]) -> Vec<String> {
    let set: BTreeSet<String> = objects
        .iter()
        .filter(|o| is_istio(o))
        .filter_map(|o| {
            let gvk = gvk_of(o).ok()?;
            Some(format!("{}.{}", istio_plural(&gvk.kind), gvk.group))
        })
        .collect();
    set.into_iter().collect()
}

/// Resolves kinds to API resources once per kind, through discovery of that group version.
#[derive(Default)]
pub struct Resolver {
    cache: HashMap<(String, String, String), (ApiResource, ApiCapabilities)>,
}

impl Resolver {
    pub async fn resolve(
        &mut self,
        client: &Client,
        gvk: &GroupVersionKind,
    ) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
        let key = (gvk.group.clone(), gvk.version.clone(), gvk.kind.clone());
        if let Some(found) = self.cache.get(&key) {
            return Ok(found.clone());
        }
        let found = kube::discovery::pinned_kind(client, gvk)
            .await
            .with_context(|| {
                format!(
                    "discovering {}/{} {} on the cluster (is its CRD installed?)",
                    gvk.group, gvk.version, gvk.kind
                )
            })?;
        self.cache.insert(key, found.clone());
        Ok(found)
    }
}

/// Whether a CRD is Established (the API server serves its kind).
pub fn crd_established(crd: Option<&CustomResourceDefinition>) -> Check<()> {
    let Some(crd) = crd else {
        return Check::Pending("the CRD does not exist".into());
    };
    let status = serde_json::to_value(&crd.status).unwrap_or_default();
    let conds = waits::conditions(&status);
    if conds
        .iter()
        .any(|(t, s, _)| t == "Established" && s == "True")
    {
        Check::Ready(())
    } else {
        Check::Pending(format!("conditions: {conds:?}"))
    }
}

/// The API resource of a VirtualService's own apiVersion (no discovery needed: the CRD's
/// plural is fixed).
pub fn virtual_service_resource(body: &Value) -> ApiResource {
    let (group, version) = body["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .unwrap_or(("networking.istio.io", "v1"));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, "VirtualService"),
        "virtualservices",
    )
}

/// Server-side applies a stage's VirtualService: the manifest's object with the stage's
/// changes, every field of the user's kept (the same field manager owns them all).
pub async fn apply_virtual_service(client: &Client, body: &Value) -> anyhow::Result<()> {
    let resource = virtual_service_resource(body);
    let ns = body["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.patch(name, &apply_params(), &Patch::Apply(body))
        .await
        .with_context(|| format!("server-side apply of VirtualService {ns}/{name}"))?;
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("Gateway", "gateways")]
    #[case("VirtualService", "virtualservices")]
    #[case("DestinationRule", "destinationrules")]
    #[case("ServiceEntry", "serviceentries")]
    #[case("AuthorizationPolicy", "authorizationpolicies")]
    #[case("Sidecar", "sidecars")]
    fn plurals_name_the_real_crds(#[case] kind: &str, #[case] plural: &str) {
        assert_eq!(istio_plural(kind), plural);
    }

    #[test]
    fn the_tutorial_needs_three_istio_crds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let manifests = crate::manifests::Manifests::load(&dir).unwrap();
        let objects: Vec<Value> = manifests.objects.into_iter().map(|o| o.value).collect();
        assert_eq!(
            needed_crds(&objects),
            vec![
                "destinationrules.networking.istio.io",
                "gateways.networking.istio.io",
                "virtualservices.networking.istio.io",
            ]
        );
    }
}
