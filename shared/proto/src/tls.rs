//! Reading the CA certificates clients verify `https://` coordinator endpoints against.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tailsift_config::ConfigError;

/// Reads a PEM file of CA certificates (at least one), returned as PEM for tonic. Errors name
/// the config `key` the path came from.
pub fn read_ca(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem =
        std::fs::read(path).map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    pem_certs(key, path, &pem)?;
    Ok(pem)
}

/// The certificates in `pem` (read from `path`, named by `key` in errors): at least one.
pub fn pem_certs(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{}: no PEM CERTIFICATE found", path.display()),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not pem").unwrap();
        let e = read_ca("coordinator.tls.ca_file", &p).unwrap_err().to_string();
        assert!(
            e.contains("coordinator.tls.ca_file") && e.contains("no PEM CERTIFICATE"),
            "{e}"
        );
        let e = read_ca("k", &dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
