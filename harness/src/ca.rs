//! The harness's own certificate authority, plugged into Istio as the `cacerts` secret.
//!
//! Istio signs every workload certificate with whatever CA it finds in `istio-system/cacerts`
//! when istiod starts ("Plug in CA Certificates"). Generating that CA here, before the install,
//! lets a run prove two things nobody else checks: that the sidecar injector's webhook trusts
//! this root (istiod patches the root into its caBundle) and that the certificate a proxy
//! serves chains to it. The root is self-signed; the intermediate, signed by the root with
//! path length 0, is the one istiod signs with. Keys are ECDSA P-256 in PKCS#8, which istiod
//! reads (`ParsePemEncodedKey` accepts `PRIVATE KEY` blocks).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The organisation every certificate of the harness's CA names.
pub const ORGANIZATION: &str = "canary-harness";

/// File names Istio expects in the `cacerts` secret, and that [`CaBundle::write_to`] writes.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
pub const CA_CERT_FILE: &str = "ca-cert.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

/// The four PEM documents of Istio's plug-in CA.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The self-signed root: what workloads and the webhook trust.
    pub root_cert_pem: String,
    /// The intermediate that istiod signs with.
    pub ca_cert_pem: String,
    /// The intermediate's private key (PKCS#8).
    pub ca_key_pem: String,
    /// Intermediate then root, as istiod appends it to every workload certificate.
    pub cert_chain_pem: String,
}

/// Never prints the private key.
impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field(
                "root",
                &fingerprint(&self.root_cert_pem).unwrap_or_default(),
            )
            .field("ca", &fingerprint(&self.ca_cert_pem).unwrap_or_default())
            .finish_non_exhaustive()
    }
}

fn ca_params(common_name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // A little in the past: clocks of kind nodes and of the host may differ.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    params
}

impl CaBundle {
    /// Root (self-signed, CA) + intermediate (signed by root, CA, pathlen 0), as Istio's
    /// "plug in CA certificates" wants; subjects name `O=canary-harness`.
    pub fn generate() -> anyhow::Result<Self> {
        let root_key = KeyPair::generate().context("generating the root key")?;
        let root_params = ca_params("canary-harness root CA", BasicConstraints::Unconstrained);
        let root_cert = root_params
            .self_signed(&root_key)
            .context("self-signing the root certificate")?;
        let root = Issuer::new(root_params, root_key);

        let ca_key = KeyPair::generate().context("generating the intermediate key")?;
        let ca_params = ca_params(
            "canary-harness intermediate CA",
            BasicConstraints::Constrained(0),
        );
        let ca_cert = ca_params
            .signed_by(&ca_key, &root)
            .context("signing the intermediate certificate with the root")?;
        let root_cert_pem = root_cert.pem();
        let ca_cert_pem = ca_cert.pem();
        Ok(Self {
            cert_chain_pem: format!("{ca_cert_pem}{root_cert_pem}"),
            root_cert_pem,
            ca_cert_pem,
            ca_key_pem: ca_key.serialize_pem(),
        })
    }

    /// Writes root-cert.pem, ca-cert.pem, ca-key.pem (mode 0600), cert-chain.pem into `dir`;
    /// returns the paths in that order.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            (ROOT_CERT_FILE, &self.root_cert_pem, false),
            (CA_CERT_FILE, &self.ca_cert_pem, false),
            (CA_KEY_FILE, &self.ca_key_pem, true),
            (CERT_CHAIN_FILE, &self.cert_chain_pem, false),
        ];
        let mut paths = Vec::new();
        for (name, text, secret) in files {
            let path = dir.join(name);
            write_file(&path, text.as_bytes(), secret)
                .with_context(|| format!("writing {}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Reads the four files [`CaBundle::write_to`] writes.
    pub fn read_from(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the plug-in CA file {}", path.display()))
        };
        let bundle = Self {
            root_cert_pem: read(ROOT_CERT_FILE)?,
            ca_cert_pem: read(CA_CERT_FILE)?,
            ca_key_pem: read(CA_KEY_FILE)?,
            cert_chain_pem: read(CERT_CHAIN_FILE)?,
        };
        // Fail here, not in istiod: each file must hold what its name says.
        certificates(&bundle.root_cert_pem).context(ROOT_CERT_FILE)?;
        certificates(&bundle.ca_cert_pem).context(CA_CERT_FILE)?;
        certificates(&bundle.cert_chain_pem).context(CERT_CHAIN_FILE)?;
        KeyPair::from_pem(&bundle.ca_key_pem)
            .map_err(|e| anyhow::anyhow!("{CA_KEY_FILE}: not a private key: {e}"))?;
        Ok(bundle)
    }

    /// The SHA-256 fingerprint of the root certificate, for messages.
    pub fn root_fingerprint(&self) -> String {
        fingerprint(&self.root_cert_pem).unwrap_or_else(|e| format!("unreadable ({e})"))
    }
}

#[cfg(unix)]
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // `mode` only applies to new files: an older file keeps its bits unless set again.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_file(path: &Path, bytes: &[u8], _secret: bool) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The DER of every `CERTIFICATE` block in `pem`, in order; an error when there is none.
pub fn certificates(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| anyhow::anyhow!("not valid PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        bail!(
            "no PEM certificate in {} bytes (starts with {:?})",
            pem.len(),
            pem.chars().take(40).collect::<String>()
        );
    }
    Ok(out)
}

/// `sha256:ab:cd:…` (first 8 bytes) of the first certificate in `pem`.
pub fn fingerprint(pem: &str) -> anyhow::Result<String> {
    let der = certificates(pem)?;
    Ok(fingerprint_der(&der[0]))
}

/// A short SHA-256 fingerprint of a DER certificate, enough to tell two apart in a message.
pub fn fingerprint_der(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", hex.join(":"))
}

fn parse(der: &[u8]) -> anyhow::Result<X509Certificate<'_>> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    Ok(cert)
}

fn describe(cert: &X509Certificate<'_>) -> String {
    let subject = cert.subject().to_string();
    let subject = if subject.is_empty() {
        // Istio's workload certificates have an empty subject and name the workload in a
        // SPIFFE URI subject alternative name.
        match cert.subject_alternative_name() {
            Ok(Some(san)) => format!("(empty subject; SAN {:?})", san.value.general_names),
            _ => "(empty subject)".to_string(),
        }
    } else {
        subject
    };
    format!("subject `{subject}` issued by `{}`", cert.issuer())
}

/// Whether `leaf_chain_pem` (a workload certificate chain as the proxy serves it: leaf first,
/// then intermediates, maybe the root) chains to `root_pem`.
///
/// Each certificate must be signed by the next one (or, for the last, by the root), the issuer
/// of each must be the subject of its signer, signers must be CAs, and every certificate must
/// be valid now. The error names what it saw: subjects and issuers of the chain and the root.
pub fn verify_chain(leaf_chain_pem: &str, root_pem: &str) -> anyhow::Result<()> {
    let chain_der = certificates(leaf_chain_pem).context("reading the workload chain")?;
    let root_der = certificates(root_pem).context("reading the root certificate")?;
    let root = parse(&root_der[0]).context("parsing the root certificate")?;
    let mut chain = Vec::new();
    for (i, der) in chain_der.iter().enumerate() {
        chain.push(parse(der).with_context(|| format!("parsing certificate {i} of the chain"))?);
    }
    let seen = || {
        let mut lines: Vec<String> = chain
            .iter()
            .enumerate()
            .map(|(i, c)| format!("  chain[{i}]: {}", describe(c)))
            .collect();
        lines.push(format!("  root: {}", describe(&root)));
        lines.join("\n")
    };
    // A chain that ends with the root itself: verify up to it and accept it as the anchor.
    let mut signers: Vec<&X509Certificate<'_>> = chain.iter().skip(1).collect();
    let ends_with_root = chain_der.last() == Some(&root_der[0]);
    if !ends_with_root {
        signers.push(&root);
    }
    for (i, cert) in chain.iter().enumerate() {
        if ends_with_root && i == chain.len() - 1 {
            break;
        }
        let signer = signers[i];
        if cert.issuer() != signer.subject() {
            bail!(
                "the workload certificate does not chain to the harness's root: chain[{i}] is issued by `{}`, but its signer in the chain is `{}`\n{}",
                cert.issuer(),
                signer.subject(),
                seen()
            );
        }
        if !signer.is_ca() {
            bail!(
                "certificate `{}` signs chain[{i}] but is not a CA\n{}",
                signer.subject(),
                seen()
            );
        }
        cert.verify_signature(Some(signer.public_key()))
            .map_err(|e| {
                anyhow::anyhow!(
                    "the signature of chain[{i}] does not verify with the key of `{}` ({e}): the workload certificate does not chain to the harness's root (fingerprint {})\n{}",
                    signer.subject(),
                    fingerprint_der(&root_der[0]),
                    seen()
                )
            })?;
    }
    for (i, cert) in chain.iter().enumerate() {
        if !cert.validity().is_valid() {
            bail!(
                "chain[{i}] is not valid now (valid from {} to {})\n{}",
                cert.validity().not_before,
                cert.validity().not_after,
                seen()
            );
        }
    }
    Ok(())
}

/// A workload certificate as istiod issues it: empty subject, SPIFFE URI, signed by the
/// bundle's intermediate; returned as leaf + cert-chain. For the cluster meshes' tests.
#[cfg(any(test, feature = "fake-api"))]
pub fn workload_chain(ca: &CaBundle) -> String {
    use rcgen::{ExtendedKeyUsagePurpose, SanType};
    let key = KeyPair::from_pem(&ca.ca_key_pem).expect("the bundle's key");
    let issuer = Issuer::from_ca_cert_pem(&ca.ca_cert_pem, key).expect("the bundle's CA");
    let leaf_key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://cluster.local/ns/test/sa/default"
            .try_into()
            .expect("a URI"),
    )];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = params.signed_by(&leaf_key, &issuer).expect("signing");
    format!("{}{}", leaf.pem(), ca.cert_chain_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_intermediate_are_cas_and_chain() {
        let ca = CaBundle::generate().unwrap();
        let root_der = certificates(&ca.root_cert_pem).unwrap();
        let root = parse(&root_der[0]).unwrap();
        assert!(root.is_ca());
        assert_eq!(root.subject(), root.issuer());
        assert!(root.subject().to_string().contains("O=canary-harness"));
        root.verify_signature(None).unwrap();

        let ca_der = certificates(&ca.ca_cert_pem).unwrap();
        let inter = parse(&ca_der[0]).unwrap();
        assert!(inter.is_ca());
        let bc = inter.basic_constraints().unwrap().unwrap().value;
        assert_eq!(bc.path_len_constraint, Some(0));
        assert_eq!(inter.issuer(), root.subject());
        inter.verify_signature(Some(root.public_key())).unwrap();

        let chain = certificates(&ca.cert_chain_pem).unwrap();
        assert_eq!(chain, vec![ca_der[0].clone(), root_der[0].clone()]);
        assert!(ca.ca_key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn files_round_trip_and_the_key_is_private() {
        let ca = CaBundle::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let paths = ca.write_to(dir.path()).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "root-cert.pem",
                "ca-cert.pem",
                "ca-key.pem",
                "cert-chain.pem"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&paths[2]), 0o600);
            assert_eq!(mode(&paths[0]), 0o644);
            // Rewriting over a looser file tightens it again.
            std::fs::set_permissions(&paths[2], std::fs::Permissions::from_mode(0o644)).unwrap();
            ca.write_to(dir.path()).unwrap();
            assert_eq!(mode(&paths[2]), 0o600);
        }
        assert_eq!(CaBundle::read_from(dir.path()).unwrap(), ca);
    }

    #[test]
    fn reading_a_broken_file_names_it() {
        let ca = CaBundle::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        ca.write_to(dir.path()).unwrap();
        std::fs::write(dir.path().join(CA_CERT_FILE), "hello").unwrap();
        let err = format!("{:#}", CaBundle::read_from(dir.path()).unwrap_err());
        assert!(err.contains("ca-cert.pem"), "{err}");
    }

    #[test]
    fn a_workload_certificate_of_the_intermediate_chains_to_the_root() {
        let ca = CaBundle::generate().unwrap();
        let chain = workload_chain(&ca);
        verify_chain(&chain, &ca.root_cert_pem).unwrap();
        // Without the root at the end, and with only the leaf + intermediate.
        let certs = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
            .map(|p| p.unwrap())
            .collect::<Vec<_>>();
        assert_eq!(certs.len(), 3);
        let leaf_and_ca = chain.replace(&ca.root_cert_pem, "");
        verify_chain(&leaf_and_ca, &ca.root_cert_pem).unwrap();
    }

    #[test]
    fn a_workload_certificate_of_another_ca_is_refused_naming_subjects() {
        let ours = CaBundle::generate().unwrap();
        let theirs = CaBundle::generate().unwrap();
        let chain = workload_chain(&theirs);
        let err = verify_chain(&chain, &ours.root_cert_pem).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("does not chain"), "{text}");
        assert!(text.contains("canary-harness intermediate CA"), "{text}");
        assert!(text.contains("canary-harness root CA"), "{text}");
        assert!(
            text.contains("spiffe://cluster.local/ns/test/sa/default"),
            "{text}"
        );
        // Only the leaf, from another CA: the issuer matches by name but not by key.
        let leaf_only = chain.replace(&theirs.cert_chain_pem, "");
        let ours_root_same_name = verify_chain(
            &format!("{leaf_only}{}", ours.ca_cert_pem),
            &ours.root_cert_pem,
        )
        .unwrap_err();
        assert!(
            format!("{ours_root_same_name:#}").contains("signature of chain[0]"),
            "{ours_root_same_name:#}"
        );
    }

    #[test]
    fn no_certificate_is_an_error() {
        let ca = CaBundle::generate().unwrap();
        let err = verify_chain("", &ca.root_cert_pem).unwrap_err();
        assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
    }

    #[test]
    fn fingerprints_tell_roots_apart() {
        let a = CaBundle::generate().unwrap();
        let b = CaBundle::generate().unwrap();
        assert!(a.root_fingerprint().starts_with("sha256:"));
        assert_ne!(a.root_fingerprint(), b.root_fingerprint());
        assert_eq!(
            a.root_fingerprint(),
            fingerprint(&a.cert_chain_pem[a.ca_cert_pem.len()..]).unwrap()
        );
    }
}
