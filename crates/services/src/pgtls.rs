//! TLS for PostgreSQL connections, with libpq's `sslmode` and `sslrootcert`: the same
//! settings reach lifeboat's own connections (rustls, here) and the client programs
//! (`PGSSLMODE`, `PGSSLROOTCERT`), so both trust exactly the same servers.
//!
//! As in libpq: `disable` never uses TLS; `prefer` uses it when the server offers it and
//! `require` insists on it, neither checking the certificate unless a root certificate is
//! known (then `require` checks like `verify-ca`); `verify-ca` checks that a trusted CA
//! signed the certificate, `verify-full` also that it names the host connected to.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode` (the `allow` mode, plain text first, is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS with a certificate signed by a trusted CA.
    VerifyCa,
    /// TLS with a certificate signed by a trusted CA for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The mode named `value` in a URL.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Its name, as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The operating system's trusted CAs (`sslrootcert=system`).
    System,
}

impl RootCert {
    /// The value of `PGSSLROOTCERT` for the client programs.
    pub fn as_env(&self) -> &std::ffi::OsStr {
        match self {
            RootCert::File(path) => path.as_os_str(),
            RootCert::System => "system".as_ref(),
        }
    }
}

/// A connection's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, or libpq's default `~/.postgresql/root.crt` when that exists.
    pub root_cert: Option<RootCert>,
}

impl PgTls {
    /// A connector for these settings; `None` for `disable`. Reads the root certificates.
    pub(crate) fn connector(&self) -> Result<Option<RustlsConnect>, String> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify = match (&self.root_cert, self.mode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(format!(
                    "sslmode={} needs sslrootcert=<file of the CA certificates> (or \
                     sslrootcert=system) in the URL",
                    self.mode.as_str()
                ));
            }
            (None, _) => None,
            (Some(root), mode) => Some((roots(root)?, mode == SslMode::VerifyFull)),
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match verify {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
            Some((roots, check_name)) => {
                let webpki =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| format!("TLS: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CaVerifier { webpki, check_name }))
                    .with_no_client_auth()
            }
        };
        Ok(Some(RustlsConnect(Arc::new(config))))
    }
}

/// The CA certificates `root` names.
fn roots(root: &RootCert) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            let certs = read_pem(path)?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no usable CA certificate in it",
                    path.display()
                ));
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: the system has no trusted CA certificates".into());
            }
        }
    }
    Ok(Arc::new(store))
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {}: not PEM certificates: {e}", path.display()))
}

/// `prefer` and `require` without a root certificate: encryption, no authentication (libpq's
/// behaviour). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (the chain only) and `verify-full` (the chain and the host name).
#[derive(Debug)]
struct CaVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The name is checked only after the chain: a name error means a trusted chain.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A `postgres` TLS connector over rustls.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<ClientConfig>);

/// The connector for one host.
pub(crate) struct RustlsHost {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHost;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHost, Self::Error> {
        Ok(RustlsHost {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

impl<S> TlsConnect<S> for RustlsHost
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let stream = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(stream)))
        })
    }
}

/// A TLS session to a PostgreSQL server.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL's query (the `postgres` crate
/// knows neither `verify-*` nor `sslrootcert`). Returns the URL without them and its TLS
/// settings; `home` is where libpq's default root certificate is looked for.
pub(crate) fn split_tls(url: &str, home: Option<&Path>) -> Result<(String, PgTls), String> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut rest = url.to_string();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if let Some((base, query)) = url.split_once('?').filter(|_| is_url) {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::mysql::percent_decode(value);
            match key {
                "sslmode" => {
                    mode = SslMode::parse(&value).ok_or_else(|| {
                        format!(
                            "sslmode=`{}` is not one of disable, prefer, require, verify-ca, \
                             verify-full",
                            crate::escape_untrusted(value.as_bytes(), crate::Newlines::Escape)
                        )
                    })?;
                }
                "sslrootcert" if value == "system" => root_cert = Some(RootCert::System),
                "sslrootcert" => root_cert = Some(RootCert::File(PathBuf::from(value))),
                _ => kept.push(pair),
            }
        }
        rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
    }
    if root_cert.is_none() && mode != SslMode::Disable {
        let default = home.map(|h| h.join(".postgresql").join("root.crt"));
        root_cert = default.filter(|p| p.is_file()).map(RootCert::File);
    }
    Ok((rest, PgTls { mode, root_cert }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_out_of_the_url() {
        let (url, tls) = split_tls(
            "postgres://u@h:5/db?connect_timeout=3&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            None,
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h:5/db?connect_timeout=3");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));

        let (url, tls) = split_tls("postgres://u@h/db", None).unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("postgres://u@h/db", SslMode::Prefer)
        );
        let (_, tls) = split_tls("postgres://h/?sslrootcert=system&sslmode=require", None).unwrap();
        assert_eq!(tls.root_cert, Some(RootCert::System));
        let e = split_tls("postgres://h/?sslmode=verify", None).unwrap_err();
        assert!(e.contains("not one of"), "{e}");
    }

    #[test]
    fn libpqs_default_root_certificate_is_used_when_present() {
        let home = tempfile::tempdir().unwrap();
        let (_, tls) = split_tls("postgres://h/?sslmode=require", Some(home.path())).unwrap();
        assert_eq!(tls.root_cert, None);
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        std::fs::write(home.path().join(".postgresql/root.crt"), "x").unwrap();
        let (_, tls) = split_tls("postgres://h/?sslmode=require", Some(home.path())).unwrap();
        assert!(matches!(tls.root_cert, Some(RootCert::File(_))));
        let (_, tls) = split_tls("postgres://h/?sslmode=disable", Some(home.path())).unwrap();
        assert_eq!(tls.root_cert, None);
    }

    #[test]
    fn verification_needs_a_root_certificate_that_exists() {
        let tls = |mode, root_cert| PgTls { mode, root_cert };
        let e = tls(SslMode::VerifyFull, None).connector().err().unwrap();
        assert!(e.contains("needs sslrootcert"), "{e}");
        let e = tls(
            SslMode::VerifyCa,
            Some(RootCert::File("/nonexistent/ca.pem".into())),
        )
        .connector()
        .err()
        .unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(tls(SslMode::Disable, None).connector().unwrap().is_none());
        assert!(tls(SslMode::Require, None).connector().unwrap().is_some());
    }
}
