//! Transport security: gRPC over TLS with renewed certificates taken up live, mutual TLS,
//! and PostgreSQL over TLS with the server's certificate verified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ticketd::grpc::pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use uuid::Uuid;

use crate::certs::{Issued, TestCa};
use crate::harness::{Backend, TestDatabase, new_ticket, settings_for, start_tls};
use crate::private_cluster::PrivateCluster;

/// A directory removed with its contents when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("ticketd-tls-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// Writes `contents` to `name` in one step (a rename), as certificate tools do.
    fn put(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        let partial = self.0.join(format!(".{name}.partial"));
        std::fs::write(&partial, contents).expect("write");
        std::fs::rename(&partial, &path).expect("rename");
        path
    }

    fn put_pair(&self, issued: &Issued) -> (PathBuf, PathBuf) {
        (
            self.put("server.crt", &issued.cert),
            self.put("server.key", &issued.key),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn trusting(ca: &TestCa) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

/// Whether a fresh connection with `tls` gets a health answer from `addr`.
async fn healthy_over(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) -> bool {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .is_ok()
}

pub async fn grpc_over_tls_serves_calls_and_takes_up_renewed_certificates(backend: Backend) {
    let files = Scratch::new();
    let first = TestCa::new("ticketd test CA");
    let (cert, key) = files.put_pair(&first.issue(&["localhost", "127.0.0.1"]));
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    settings.tls_reload_seconds = 1;
    let app = start_tls(settings, database, trusting(&first)).await;

    let ticket = app
        .tickets()
        .create_ticket(new_ticket("over TLS"))
        .await
        .expect("an authenticated call over TLS")
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(ticket.subject, "over TLS");
    assert!(
        !healthy_over(app.addr, None).await,
        "plaintext is not served next to TLS"
    );
    let stranger = TestCa::new("another CA");
    assert!(
        !healthy_over(app.addr, Some(trusting(&stranger))).await,
        "a client that does not trust the server's CA cannot connect"
    );

    // The certificate is renewed under a new CA: new connections get it, without a
    // restart.
    let renewed = TestCa::new("renewed CA");
    files.put_pair(&renewed.issue(&["localhost", "127.0.0.1"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !healthy_over(app.addr, Some(trusting(&renewed))).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!healthy_over(app.addr, Some(trusting(&first))).await);
    // The connection made before the renewal still works.
    app.tickets()
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id)),
        })
        .await
        .expect("an open connection keeps working");
}

pub async fn mutual_tls_admits_only_clients_of_the_client_ca(backend: Backend) {
    let files = Scratch::new();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (cert, key) = files.put_pair(&server_ca.issue(&["localhost", "127.0.0.1"]));
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    settings.tls_client_ca = Some(files.put("clients.pem", &client_ca.pem()));
    let gateway = client_ca.issue(&["sms-gateway"]);
    let admitted = trusting(&server_ca).identity(Identity::from_pem(&gateway.cert, &gateway.key));
    let app = start_tls(settings, database, admitted).await;

    app.tickets()
        .create_ticket(new_ticket("with a client certificate"))
        .await
        .expect("a client of the client CA is served");
    assert!(
        !healthy_over(app.addr, Some(trusting(&server_ca))).await,
        "no client certificate, no service"
    );
    let outsider = TestCa::new("outsider CA").issue(&["intruder"]);
    let refused = trusting(&server_ca).identity(Identity::from_pem(&outsider.cert, &outsider.key));
    assert!(
        !healthy_over(app.addr, Some(refused)).await,
        "a certificate from another CA is refused"
    );
}

/// The URL of `cluster`'s `postgres` database with `params`.
fn url_with(cluster: &PrivateCluster, params: &str) -> String {
    format!("{}?{params}", cluster.url())
}

fn ca_file(dir: &Path, ca: &TestCa) -> String {
    let path = dir.join("root.crt");
    std::fs::write(&path, ca.pem()).expect("write CA");
    path.display().to_string()
}

pub async fn postgres_over_tls_verifies_the_server() {
    let ca = TestCa::new("database CA");
    let mut cluster = tokio::task::spawn_blocking(PrivateCluster::init)
        .await
        .unwrap();
    let server = ca.issue(&["localhost", "127.0.0.1"]);
    let cert = cluster.write_private("server.crt", &server.cert);
    let key = cluster.write_private("server.key", &server.key);
    // Only encrypted connections are let in.
    cluster.write_private(
        "pg_hba.conf",
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
    );
    cluster.options = vec![
        "ssl=on".into(),
        format!("ssl_cert_file={}", cert.display()),
        format!("ssl_key_file={}", key.display()),
    ];
    let cluster = std::sync::Arc::new(cluster);
    {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.pg_ctl(&["start"]))
            .await
            .unwrap();
    }
    let files = Scratch::new();
    let trusted = ca_file(&files.0, &ca);

    let plain = ticketd::config::Settings::with_database(url_with(&cluster, "sslmode=disable"));
    assert!(
        ticketd::app::App::build(plain).await.is_err(),
        "the server refuses unencrypted connections"
    );
    // Without `sslmode` ticketd does not encrypt (the driver's `prefer` would, unverified).
    let unsaid = ticketd::config::Settings::with_database(cluster.url());
    assert!(
        ticketd::app::App::build(unsaid).await.is_err(),
        "no sslmode, no TLS"
    );
    let wrong = Scratch::new();
    let untrusted = ca_file(&wrong.0, &TestCa::new("someone else"));
    let spoofed = ticketd::config::Settings::with_database(url_with(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={untrusted}"),
    ));
    assert!(
        ticketd::app::App::build(spoofed).await.is_err(),
        "a server certificate from an unknown CA is refused"
    );

    let verified = url_with(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={trusted}"),
    );
    let app = crate::harness::spawn_app(Backend::Postgres(verified)).await;
    let ticket = crate::harness::create(&mut app.tickets(), new_ticket("stored over TLS")).await;
    assert_eq!(ticket.subject, "stored over TLS");
}
