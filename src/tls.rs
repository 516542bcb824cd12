//! gRPC over TLS (rustls with ring).
//!
//! The certificate chain and key are read from PEM files at start-up and read again when
//! either file changes (checked every `reload_every`), so a renewed certificate takes
//! effect for new connections without a restart; a renewal that cannot be read is logged
//! and the previous certificate stays. With a client CA, every connection must present
//! a certificate that CA signed (mutual TLS); API keys still say who the caller is.
//!
//! Handshakes run beside the accept loop, each with a deadline, at most
//! [`MAX_HANDSHAKES`] at once and [`MAX_HANDSHAKES_PER_PEER`] from one address, so a slow
//! or silent client holds up nobody.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Makes ring the process's TLS crypto provider (for HTTP clients built without their
/// own configuration); a provider installed before stays.
pub fn install_crypto_provider() {
    let _ = ring::default_provider().install_default();
}

/// Handshakes in progress at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 1024;
/// Handshakes in progress at once from one address, so one host cannot take all slots.
pub const MAX_HANDSHAKES_PER_PEER: usize = 32;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress per peer address.
#[derive(Default)]
struct PeerCounts(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One handshake's place in its peer's count, given back when dropped.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl PeerCounts {
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        let mut counts = self.0.lock().ok()?;
        let count = counts.entry(peer).or_default();
        if *count >= MAX_HANDSHAKES_PER_PEER {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: self.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.0.lock()
            && let Some(count) = counts.get_mut(&self.peer)
        {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub reload_every: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

fn error(path: &Path, what: &str, err: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{}: {what}: {err}", path.display()))
}

/// The certificate in use, swapped when its files change.
#[derive(Debug)]
struct ReloadingCert {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when `current` was read.
    read_at: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load_key(settings: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .map_err(|e| error(&settings.cert, "cannot read certificates", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(&settings.cert, "not a PEM certificate chain", e))?;
    if chain.is_empty() {
        return Err(error(
            &settings.cert,
            "no certificate",
            "the file holds none",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| error(&settings.key, "not a PEM private key", e))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error(&settings.key, "unusable private key", e))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| error(&settings.key, "does not belong to the certificate", e))?;
    Ok(certified)
}

impl ReloadingCert {
    /// Reads the files again if either changed since the last read.
    fn reload_if_changed(&self) {
        let stamps = (modified(&self.settings.cert), modified(&self.settings.key));
        if self.read_at.read().is_ok_and(|seen| *seen == stamps) {
            return;
        }
        match load_key(&self.settings, &self.provider) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(key);
                }
                tracing::info!(cert = %self.settings.cert.display(), "TLS certificate reloaded");
            }
            Err(err) => {
                tracing::warn!(error = %err, "TLS certificate not reloaded; the previous one stays");
            }
        }
        if let Ok(mut seen) = self.read_at.write() {
            *seen = stamps;
        }
    }
}

/// Accepts TLS connections for the gRPC server.
pub struct TlsServer {
    acceptor: TlsAcceptor,
    cert: Arc<ReloadingCert>,
}

impl TlsServer {
    /// Reads the certificate, key and client CA; any of them missing or malformed is an
    /// error here, at start-up.
    pub fn new(settings: TlsSettings) -> Result<TlsServer, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let stamps = (modified(&settings.cert), modified(&settings.key));
        let key = load_key(&settings, &provider)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| error(path, "cannot read the client CA", e))?
                {
                    let cert = cert.map_err(|e| error(path, "not a PEM certificate", e))?;
                    roots
                        .add(cert)
                        .map_err(|e| error(path, "not a CA certificate", e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| error(path, "unusable client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let cert = Arc::new(ReloadingCert {
            settings,
            provider,
            current: RwLock::new(Arc::new(key)),
            read_at: RwLock::new(stamps),
        });
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
        })
    }

    /// Accepts connections on `listener` and hands over those whose handshake
    /// succeeded. Stops when the stream is dropped.
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (sender, receiver) = mpsc::channel(64);
        let reload_every = self.cert.settings.reload_every;
        let cert = self.cert.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(reload_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            let peers = Arc::new(PeerCounts::default());
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = ticks.tick() => {
                        cert.reload_if_changed();
                        continue;
                    }
                    () = sender.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, usually: let some close.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = peers.take(peer.ip()) else {
                    tracing::debug!(%peer, "too many TLS handshakes from one address; closed");
                    continue;
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!("too many TLS handshakes in progress; connection closed");
                    continue;
                };
                // Small gRPC frames must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let acceptor = self.acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _held = (permit, slot);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send(Ok(tls)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn served(server: &TlsServer) -> Vec<u8> {
        let current = server.cert.current.read().unwrap().clone();
        current.cert[0].as_ref().to_vec()
    }

    #[test]
    fn one_address_cannot_take_every_handshake_slot() {
        let counts = Arc::new(PeerCounts::default());
        let loud: IpAddr = "192.0.2.1".parse().unwrap();
        let slots: Vec<PeerSlot> = (0..MAX_HANDSHAKES_PER_PEER)
            .map(|_| counts.take(loud).unwrap())
            .collect();
        assert!(counts.take(loud).is_none());
        assert!(
            counts.take("192.0.2.2".parse().unwrap()).is_some(),
            "others still get in"
        );
        drop(slots);
        assert!(counts.take(loud).is_some(), "slots come back");
        assert!(
            counts.0.lock().unwrap().is_empty(),
            "no address is remembered once its handshakes end"
        );
    }

    #[tokio::test]
    async fn a_broken_renewal_keeps_the_certificate_in_use() {
        let dir = std::env::temp_dir().join(format!("ticketd-tls-unit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = TlsSettings {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client_ca: None,
            reload_every: Duration::from_secs(1),
        };
        let (cert, key) = issue("first");
        std::fs::write(&settings.cert, &cert).unwrap();
        std::fs::write(&settings.key, &key).unwrap();
        let server = TlsServer::new(settings.clone()).unwrap();
        let first = served(&server);

        // Half-written: a new certificate with the old key does not load.
        let (renewed_cert, renewed_key) = issue("renewed");
        std::fs::write(&settings.cert, &renewed_cert).unwrap();
        server.cert.reload_if_changed();
        assert_eq!(served(&server), first, "a mismatched pair is not taken up");

        std::fs::write(&settings.key, &renewed_key).unwrap();
        server.cert.reload_if_changed();
        let renewed = served(&server);
        assert_ne!(renewed, first, "the complete renewal is taken up");

        std::fs::write(&settings.cert, "not a certificate").unwrap();
        server.cert.reload_if_changed();
        assert_eq!(served(&server), renewed);

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            TlsServer::new(settings).is_err(),
            "missing files fail at start-up"
        );
    }
}
