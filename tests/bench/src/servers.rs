//! The servers under test, started as child processes on 127.0.0.1 with
//! their own data directories under the work directory.
//!
//! Each server runs in a process group of its own, so stopping it also stops
//! what it started (RabbitMQ's `rabbitmq-server` is a shell script around
//! `beam.smp`). The group ids are appended to `<work-dir>/pids` so that
//! `run.sh` can still stop them if this process is killed outright.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process in its own process group, stopped on drop.
pub(crate) struct Managed {
    name: String,
    child: Child,
}

impl Managed {
    /// Starts `command` in a new process group and records the group id.
    fn spawn(name: &str, mut command: Command, work: &Path) -> anyhow::Result<Managed> {
        command.process_group(0).stdin(Stdio::null());
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let mut pids = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join("pids"))
            .context("opening the pid file")?;
        writeln!(pids, "{}", child.id()).context("writing the pid file")?;
        Ok(Managed {
            name: name.to_string(),
            child,
        })
    }

    /// Its process group (the leader's pid).
    pub(crate) fn group(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited (it did not start).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited during start-up: {status}", self.name);
        }
        Ok(())
    }

    /// SIGTERM to the group, then SIGKILL after `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Also after a clean exit of the leader: members of the group may linger.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Writes every thread's stack of process `pid` to `out` with gdb, if gdb
/// is installed; returns whether it did. For a host that stopped answering.
pub(crate) fn dump_stacks(pid: u32, out: &Path) -> bool {
    let Ok(file) = std::fs::File::create(out) else {
        return false;
    };
    // `timeout` bounds gdb itself, which can hang on a wedged process.
    Command::new("timeout")
        .args(["120", "gdb", "-p", &pid.to_string(), "-batch"])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt 40"])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free TCP port on 127.0.0.1 (free now; the server binds it a moment later).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `port`, or fails.
async fn wait_for_port(server: &mut Managed, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        server.check_alive()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on port {port} within {limit:?}",
                server.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

fn fresh_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("clearing {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

/// A running `sluice serve`.
pub(crate) struct SluiceServer {
    pub(crate) url: String,
    /// `SharedAccessSignature ...` for the whole namespace.
    pub(crate) token: String,
    /// Its directory (data, log).
    pub(crate) dir: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) process: Managed,
}

impl SluiceServer {
    /// Starts `sluice serve --durability <durability>` on a free port, with
    /// `SLUICE_LOG=<log_filter>` when given.
    pub(crate) async fn start(
        binary: &Path,
        durability: &str,
        log_filter: Option<&str>,
        dir: &Path,
        work: &Path,
    ) -> anyhow::Result<SluiceServer> {
        fresh_dir(dir)?;
        let data = dir.join("db");
        let log = dir.join("host.log");
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--durability",
                durability,
            ])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(log_file(&log)?);
        // Unset, the host logs at its default level, as it would in use.
        command.env_remove("SLUICE_LOG");
        if let Some(filter) = log_filter {
            command.env("SLUICE_LOG", filter);
        }
        let mut process = Managed::spawn(&format!("sluice serve ({durability})"), command, work)?;
        let stdout = process
            .child
            .stdout
            .take()
            .context("sluice serve has no stdout")?;
        // The first stdout line names the address; read it on a thread so a
        // host that never prints cannot hang the benchmark.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            // Keep draining so the host never blocks on a full pipe.
            let mut rest = String::new();
            while matches!(reader.read_line(&mut rest), Ok(n) if n > 0) {
                rest.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| {
                anyhow::anyhow!(
                    "sluice serve printed no address within 60 s; see {}",
                    log.display()
                )
            })?
            .context("reading sluice serve's stdout")?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}; see {}", log.display()))?
            .to_string();
        let connection = std::fs::read_to_string(data.join("connection-string"))
            .context("reading the connection string sluice serve wrote")?;
        let output = Command::new(binary)
            .args(["--url", &url, "--connection-string", connection.trim()])
            .args(["sas", "token", "--ttl-secs", "86400"])
            .output()
            .context("running sluice sas token")?;
        if !output.status.success() {
            bail!(
                "sluice sas token failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let token = String::from_utf8(output.stdout)
            .context("sluice sas token printed no text")?
            .trim()
            .to_string();
        Ok(SluiceServer {
            url,
            token,
            dir: dir.to_path_buf(),
            log,
            process,
        })
    }
}

/// A running `nats-server -js` with file storage.
pub(crate) struct NatsServer {
    pub(crate) url: String,
    pub(crate) process: Managed,
}

impl NatsServer {
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        work: &Path,
    ) -> anyhow::Result<NatsServer> {
        fresh_dir(dir)?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("nats.log"))?);
        let mut process = Managed::spawn("nats-server", command, work)?;
        wait_for_port(&mut process, port, Duration::from_secs(30)).await?;
        Ok(NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            process,
        })
    }
}

/// A running RabbitMQ node with its own epmd, all on loopback.
pub(crate) struct RabbitServer {
    pub(crate) url: String,
    // Field order is drop order: the node stops before its epmd.
    pub(crate) process: Managed,
    _epmd: Managed,
}

impl RabbitServer {
    /// Starts `rabbitmq-server` (the script under /usr/lib/rabbitmq/bin, not
    /// the /usr/sbin wrapper that switches to the `rabbitmq` user and its
    /// system directories) with every directory, port and the Erlang cookie
    /// (via HOME) inside `dir`.
    pub(crate) async fn start(
        server: &Path,
        epmd: &Path,
        dir: &Path,
        work: &Path,
    ) -> anyhow::Result<RabbitServer> {
        fresh_dir(dir)?;
        let amqp_port = free_port()?;
        let dist_port = free_port()?;
        let epmd_port = free_port()?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let config = write(
            "rabbitmq.conf",
            &format!("listeners.tcp.1 = 127.0.0.1:{amqp_port}\nloopback_users.guest = true\n"),
        )?;
        let plugins = write("enabled_plugins", "[].\n")?;
        let env_file = write("rabbitmq-env.conf", "")?;

        // A foreground epmd of our own (Erlang would otherwise start a
        // daemonised one on the shared default port that outlives the run).
        let mut command = Command::new(epmd);
        command
            .args(["-port", &epmd_port.to_string()])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("epmd.log"))?);
        let mut epmd = Managed::spawn("epmd", command, work)?;
        wait_for_port(&mut epmd, epmd_port, Duration::from_secs(10)).await?;

        let node = format!("sluicebench{}@localhost", std::process::id());
        let mut command = Command::new(server);
        command
            .current_dir(dir)
            .env("HOME", dir)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_CONF_ENV_FILE", &env_file)
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdout(log_file(&dir.join("server.out"))?)
            .stderr(log_file(&dir.join("server.err"))?);
        let mut process = Managed::spawn("rabbitmq-server", command, work)?;
        // Booting takes 5-20 s on a busy 2-core machine; the AMQP listener
        // opens last, once the node is ready.
        wait_for_port(&mut process, amqp_port, Duration::from_secs(120)).await?;
        Ok(RabbitServer {
            url: format!("amqp://guest:guest@127.0.0.1:{amqp_port}/%2f"),
            process,
            _epmd: epmd,
        })
    }
}
