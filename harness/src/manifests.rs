//! Loads the `manifests/` folder: every YAML document, typed where the harness reads it.
//!
//! Istio routing resources are parsed strictly (see [`crate::istio`]); Kubernetes workloads are
//! read through small lenient views, since the cluster's API server validates them in full.
//! The raw objects are kept in file order, for the meshes that apply them as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::input_error::{InputError, InputErrors};
use crate::istio::{self, DestinationRule, Gateway, VirtualService};

/// One object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub file: PathBuf,
    /// Position of the document in its file, from 0.
    pub document: usize,
    pub value: T,
}

impl<T> Located<T> {
    pub fn new(file: &Path, document: usize, value: T) -> Self {
        Self {
            file: file.to_path_buf(),
            document,
            value,
        }
    }
}

/// The metadata of a workload, as far as the harness reads it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A Deployment, as far as the harness reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Deployment {
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub replicas: Option<u32>,
    pub template: PodTemplate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: PodMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PodMeta {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Container {
    pub name: String,
    pub image: String,
}

/// A Service, as far as the harness reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServiceSpec {
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u32,
}

/// Everything in the manifests folder.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// The first source (the folder of a scenario that names one).
    pub dir: PathBuf,
    /// Every folder and file read, in order.
    pub sources: Vec<PathBuf>,
    /// Every object, in the order of files (sorted by name) and documents.
    pub objects: Vec<Located<serde_json::Value>>,
    pub virtual_services: Vec<Located<VirtualService>>,
    pub destination_rules: Vec<Located<DestinationRule>>,
    pub gateways: Vec<Located<Gateway>>,
    pub deployments: Vec<Located<Deployment>>,
    pub services: Vec<Located<Service>>,
}

impl Manifests {
    /// Reads every `.yaml`/`.yml` file of `dir`; reports every problem found, not just the first.
    pub fn load(dir: &Path) -> Result<Self, InputErrors> {
        Self::load_all(&[dir.to_path_buf()])
    }

    /// Reads each source in order: a folder (its `.yaml`/`.yml` files, by name) or one file.
    /// An object that two sources both define is refused: which one applies would be a guess.
    pub fn load_all(sources: &[PathBuf]) -> Result<Self, InputErrors> {
        let mut files: Vec<PathBuf> = Vec::new();
        for source in sources {
            files.extend(yaml_files(source)?);
        }
        let mut manifests = Manifests {
            dir: sources.first().cloned().unwrap_or_default(),
            sources: sources.to_vec(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut read = std::collections::BTreeSet::new();
        for file in files {
            // A file named on its own and inside a listed folder is read once.
            if !read.insert(file.clone()) {
                continue;
            }
            match read_documents(&file) {
                Ok(docs) => {
                    for (document, value) in docs.into_iter().enumerate() {
                        if let Some(first) = manifests.same_object(&value) {
                            errors.push(InputError::new(
                                &file,
                                doc_field(document, "metadata.name"),
                                format!(
                                    "{} `{}` is also defined in {}",
                                    value["kind"].as_str().unwrap_or("the object"),
                                    value["metadata"]["name"].as_str().unwrap_or_default(),
                                    first.display()
                                ),
                                "list each object once: drop one of the two files from the scenario's `manifests`",
                            ));
                            continue;
                        }
                        if let Err(e) = manifests.add(&file, document, value) {
                            errors.extend(e);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(manifests)
        } else {
            Err(InputErrors(errors))
        }
    }

    /// Where the manifests came from, for messages.
    pub fn describe_sources(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The file that already holds an object of the same kind, namespace and name.
    fn same_object(&self, value: &serde_json::Value) -> Option<&Path> {
        let key = |v: &serde_json::Value| {
            (
                v["kind"].as_str().map(str::to_string),
                v["metadata"]["namespace"].as_str().map(str::to_string),
                v["metadata"]["name"].as_str().map(str::to_string),
            )
        };
        let wanted = key(value);
        wanted.2.as_ref()?;
        self.objects
            .iter()
            .find(|o| key(&o.value) == wanted)
            .map(|o| o.file.as_path())
    }

    fn add(
        &mut self,
        file: &Path,
        document: usize,
        value: serde_json::Value,
    ) -> Result<(), Vec<InputError>> {
        let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let one = |field: &str, problem: String, fix: String| {
            vec![InputError::new(
                file,
                doc_field(document, field),
                problem,
                fix,
            )]
        };
        if api_version.is_empty() || kind.is_empty() {
            return Err(one(
                "kind",
                "the document has no `apiVersion` and `kind`".into(),
                "every manifest document must be a Kubernetes object with apiVersion and kind"
                    .into(),
            ));
        }
        // Istio's problems, each with its field path and fix, located in this file and document.
        let located = |problems: Vec<istio::Problem>| -> Vec<InputError> {
            problems
                .into_iter()
                .map(|p| {
                    InputError::new(
                        file,
                        doc_field(document, &p.field),
                        format!("{kind}: {}", p.problem),
                        p.fix,
                    )
                })
                .collect()
        };
        if api_version.starts_with("networking.istio.io/") {
            if !istio::SERVED_VERSIONS.contains(&api_version.as_str()) {
                return Err(one(
                    "apiVersion",
                    format!("`{api_version}` is not served by Istio 1.31"),
                    format!("use `apiVersion: {}`", istio::API_VERSION),
                ));
            }
            match kind.as_str() {
                "VirtualService" => {
                    let vs = istio::parse_virtual_service(&value).map_err(located)?;
                    self.virtual_services.push(Located::new(file, document, vs));
                }
                "DestinationRule" => {
                    let dr = istio::parse_destination_rule(&value).map_err(located)?;
                    self.destination_rules
                        .push(Located::new(file, document, dr));
                }
                "Gateway" => {
                    let gw = istio::parse_gateway(&value).map_err(located)?;
                    self.gateways.push(Located::new(file, document, gw));
                }
                _ => {}
            }
        } else if api_version.starts_with("config.istio.io/") && kind == "RouteRule" {
            return Err(one(
                "kind",
                "RouteRule (config.istio.io/v1alpha2) was removed in Istio 0.8".into(),
                "write a VirtualService (routes and weights) and a DestinationRule (subsets) \
                 in networking.istio.io/v1, like manifests/virtual-service.yaml"
                    .into(),
            ));
        } else {
            match (api_version.as_str(), kind.as_str()) {
                ("apps/v1", "Deployment") => {
                    let d = lenient(file, document, &kind, &value).map_err(|e| vec![e])?;
                    self.deployments.push(Located::new(file, document, d));
                }
                ("v1", "Service") => {
                    let s = lenient(file, document, &kind, &value).map_err(|e| vec![e])?;
                    self.services.push(Located::new(file, document, s));
                }
                _ => {}
            }
        }
        self.objects.push(Located::new(file, document, value));
        Ok(())
    }

    pub fn virtual_service(&self, name: &str) -> Option<&Located<VirtualService>> {
        self.virtual_services
            .iter()
            .find(|v| v.value.metadata.name == name)
    }

    /// The object as written in its file (every field kept).
    pub fn raw<T>(&self, located: &Located<T>) -> Option<&serde_json::Value> {
        self.objects
            .iter()
            .find(|o| o.file == located.file && o.document == located.document)
            .map(|o| &o.value)
    }
}

/// The YAML files of a source: a folder's `.yaml`/`.yml` files by name, or the file itself.
fn yaml_files(source: &Path) -> Result<Vec<PathBuf>, InputError> {
    if source.is_file() {
        return Ok(vec![source.to_path_buf()]);
    }
    let entries = std::fs::read_dir(source).map_err(|e| {
        InputError::new(
            source,
            "",
            format!("cannot read the manifests: {e}"),
            "point the scenario's `manifests` at a folder of Kubernetes YAML files (or a list of folders and files)",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(InputError::new(
            source,
            "",
            "the manifests folder has no .yaml files",
            "point the scenario's `manifests` at the folder that holds the routing resources",
        ));
    }
    Ok(files)
}

/// Parses a multi-document YAML file; comment-only documents are skipped.
fn read_documents(file: &Path) -> Result<Vec<serde_json::Value>, InputError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        InputError::new(
            file,
            "",
            format!("cannot read the file: {e}"),
            "check that it exists and is readable",
        )
    })?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
        InputError::new(
            file,
            "",
            format!("not valid YAML: {e}"),
            "fix the YAML syntax at the line shown",
        )
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn doc_field(document: usize, field: &str) -> String {
    if document == 0 {
        field.to_string()
    } else {
        format!("(document {}) {field}", document + 1)
    }
}

/// Lenient parse of a Kubernetes workload: only the fields the harness reads must be right.
fn lenient<T: DeserializeOwned>(
    file: &Path,
    document: usize,
    kind: &str,
    value: &serde_json::Value,
) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        InputError::new(
            file,
            doc_field(document, &path),
            format!("{kind}: {}", e.into_inner()),
            format!("give the {kind} a valid `{path}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn project_manifests() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
    }

    #[test]
    fn loads_the_projects_manifests() {
        let m = Manifests::load(&project_manifests()).unwrap();
        assert_eq!(m.virtual_services.len(), 1);
        assert_eq!(m.destination_rules.len(), 1);
        assert_eq!(m.gateways.len(), 1);
        assert_eq!(m.deployments.len(), 2);
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.objects.len(), 7);
        let vs = &m.virtual_service("podinfo").unwrap().value;
        assert_eq!(vs.api_version, istio::API_VERSION);
        assert!(vs.spec.gateways().contains(&"mesh".to_string()));
        let svc = &m.services[0].value;
        assert_eq!(svc.spec.ports[0].name.as_deref(), Some("http"));
        assert_eq!(svc.spec.ports[0].port, 9898);
    }

    #[test]
    fn a_list_of_files_and_folders_is_read_in_order_and_each_file_once() {
        let project = project_manifests();
        let sources = vec![
            project.join("namespace.yaml"),
            project.clone(),
            project.join("gateway.yaml"),
        ];
        let m = Manifests::load_all(&sources).unwrap();
        assert_eq!(m.objects.len(), 7, "no file read twice");
        assert_eq!(m.objects[0].value["kind"], "Namespace");
        assert!(m.describe_sources().contains("namespace.yaml"));
        // The subfolders of a listed folder are not read: they are other scenarios' manifests.
        let ab = Manifests::load_all(&[project.join("ab-header")]).unwrap();
        assert_eq!(ab.virtual_services.len(), 1);
    }

    #[test]
    fn an_object_defined_in_two_sources_is_refused() {
        let project = project_manifests();
        let err = Manifests::load_all(&[project.clone(), project.join("ab-header")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ab-header/virtual-service.yaml"), "{err}");
        assert!(
            err.contains("VirtualService `podinfo` is also defined in"),
            "{err}"
        );
        assert!(err.contains("drop one of the two files"), "{err}");
    }

    #[test]
    fn the_tutorials_destination_name_names_file_field_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "vs.yaml",
            "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: helloworld\nspec:\n  hosts: [helloworld]\n  http:\n  - route:\n    - destination:\n        name: helloworld\n        subset: v1\n      weight: 90\n",
        );
        let err = Manifests::load(dir.path()).unwrap_err();
        let e = &err.0[0];
        assert!(e.file.ends_with("vs.yaml"));
        assert_eq!(e.field, "spec.http[0].route[0].destination.name");
        assert!(e.fix.contains("rename `name` to `host`"), "{}", e.fix);
    }

    #[rstest]
    #[case::route_rule(
        "apiVersion: config.istio.io/v1alpha2\nkind: RouteRule\nmetadata:\n  name: r\nspec: {}\n",
        "kind",
        "RouteRule"
    )]
    #[case::old_version(
        "apiVersion: networking.istio.io/v1alpha1\nkind: VirtualService\nmetadata:\n  name: r\nspec: {}\n",
        "apiVersion",
        "not served"
    )]
    #[case::typo(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n  host: a\n  subset:\n  - name: x\n",
        "spec.subset",
        "unknown field `subset`"
    )]
    #[case::no_kind("metadata:\n  name: r\n", "kind", "no `apiVersion`")]
    #[case::bad_yaml("a: [1, 2\n", "", "not valid YAML")]
    #[case::second_document(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: test\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n    bnid: 1.2.3.4\n",
        "(document 2) spec.servers[0].bnid",
        "unknown field `bnid`"
    )]
    fn bad_manifests_are_explained(#[case] text: &str, #[case] field: &str, #[case] problem: &str) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bad.yaml", text);
        let err = Manifests::load(dir.path()).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].field, field, "{err}");
        assert!(err.0[0].problem.contains(problem), "{err}");
        assert!(!err.0[0].fix.is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "metadata: {name: a}\n");
        write(dir.path(), "b.yml", "metadata: {name: b}\n");
        let err = Manifests::load(dir.path()).unwrap_err();
        assert_eq!(err.0.len(), 2);
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifests::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no .yaml files"));
    }
}
