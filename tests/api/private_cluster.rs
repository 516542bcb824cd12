//! A throwaway PostgreSQL cluster of a test's own (`initdb` + `pg_ctl`), for what the
//! shared server must not go through: being stopped, or reconfigured for TLS.

use std::path::PathBuf;
use std::process::Command;

use uuid::Uuid;

/// A PostgreSQL cluster in a temporary directory, on its own port, removed on drop.
pub struct PrivateCluster {
    bin: PathBuf,
    pub dir: PathBuf,
    port: u16,
    /// Server settings beyond the port and socket directory, as `-c name=value` pairs.
    pub options: Vec<String>,
}

impl PrivateCluster {
    /// The server programs: `TICKETD_TEST_PG_BIN`, else the newest under
    /// `/usr/lib/postgresql/*/bin`, else whatever directory `pg_config --bindir` names.
    fn bin_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("TICKETD_TEST_PG_BIN") {
            return PathBuf::from(dir);
        }
        // Debian keeps each major version in a directory named after it ("15", "9.6").
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version: f64 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, bin)) = newest {
            return bin;
        }
        let output = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("PostgreSQL server programs (initdb, pg_ctl): set TICKETD_TEST_PG_BIN");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    }

    /// A cluster initialised, and started.
    pub fn start() -> PrivateCluster {
        let cluster = Self::init();
        cluster.pg_ctl(&["start"]);
        cluster
    }

    /// A cluster initialised but not started: settings and files may be added first.
    pub fn init() -> PrivateCluster {
        let cluster = Self::unmade(Self::bin_dir());
        let dir = cluster.dir.display().to_string();
        cluster.run(
            "initdb",
            &["-D", &dir, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        cluster
    }

    /// A cluster with a directory name and a port, neither made nor taken yet.
    fn unmade(bin: PathBuf) -> PrivateCluster {
        PrivateCluster {
            bin,
            dir: std::env::temp_dir().join(format!("ticketd-pg-{}", Uuid::new_v4().simple())),
            port: free_port(),
            options: Vec::new(),
        }
    }

    /// A streaming standby of `primary`, copied with `pg_basebackup` (which also writes
    /// its `primary_conninfo`), and started with `options`.
    pub fn standby_of(primary: &PrivateCluster, options: &[&str]) -> PrivateCluster {
        let mut standby = Self::unmade(primary.bin.clone());
        standby.options = options.iter().map(|o| o.to_string()).collect();
        let (dir, port) = (standby.dir.display().to_string(), primary.port.to_string());
        let mut args = client_args(&port).to_vec();
        args.extend([
            "-D",
            &dir,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
        ]);
        standby.run("pg_basebackup", &args);
        standby.pg_ctl(&["start"]);
        standby
    }

    /// Runs `sql` on the cluster's `postgres` database with `psql`.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let output = self
            .command("psql")
            .args(client_args(&port))
            .args(["-XAtc", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Writes a file into the cluster's directory that the server may read (and only
    /// it: PostgreSQL refuses keys others can read).
    pub fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write a cluster file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(&path)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        path
    }

    /// One of the server programs; as root it runs as `postgres`, because PostgreSQL
    /// refuses to run as root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn pg_ctl(&self, action: &[&str]) {
        let dir = self.dir.display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} -c max_connections=40",
            self.port
        );
        for option in &self.options {
            options.push_str(" -c ");
            options.push_str(option);
        }
        let mut args = vec!["-D", &dir, "-l", &log, "-o", &options, "-w"];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// The running server's processes: the postmaster and its children.
    pub fn processes(&self) -> Vec<String> {
        let pid_file =
            std::fs::read_to_string(self.dir.join("postmaster.pid")).expect("postmaster.pid");
        let postmaster = pid_file.lines().next().expect("a pid").trim().to_owned();
        // A process's parent is the second field after its name in /proc/PID/stat.
        let children = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().into_string().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                (parent == postmaster).then_some(pid)
            })
            .collect::<Vec<_>>();
        std::iter::once(postmaster).chain(children).collect()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &dir, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a client program reaches the cluster on `port`.
fn client_args(port: &str) -> [&str; 6] {
    ["-h", "127.0.0.1", "-p", port, "-U", "postgres"]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
