//! The Kafka event log against a real broker: `EDGEREC_KAFKA_BOOTSTRAP=HOST:PORT` names one
//! (Apache Kafka, Redpanda, ...); without it the tests start tansu (a Kafka-protocol broker the
//! project's setup installs) on a free local port. A broker that cannot start fails the tests
//! with the reason; nothing is skipped.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A broker for the whole test binary: (bootstrap address, the tansu process if we started it).
fn broker() -> &'static str {
    static BROKER: OnceLock<(String, Option<Child>)> = OnceLock::new();
    &BROKER.get_or_init(start_broker).0
}

fn tansu_binary() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = Path::new(&home).join(".cargo/bin/tansu");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("tansu")
    }
}

fn start_broker() -> (String, Option<Child>) {
    if let Ok(addr) = std::env::var("EDGEREC_KAFKA_BOOTSTRAP") {
        return (addr, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = spawn_tansu(port, "memory://tansu/", Path::new("."));
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return (addr, Some(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tansu did not listen on {addr} within 5 s");
}

/// Starts tansu on `port` with `storage`, in `cwd` (where a `sqlite://FILE` lives). The broker
/// ends with this test process (a static is never dropped, so nothing else would stop it): the
/// kernel sends it SIGTERM when the thread that spawned it exits, and that thread lives as long
/// as the process.
fn spawn_tansu(port: u16, storage: &str, cwd: &Path) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(tansu_binary());
    command
        .current_dir(cwd)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", storage])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        sender
            .send(command.spawn())
            .expect("the test waits for the broker");
        loop {
            std::thread::park();
        }
    });
    receiver
        .recv()
        .expect("the spawning thread answers")
        .unwrap_or_else(|e| {
            panic!(
                "cannot start the tansu broker ({e}); `make test` installs it (scripts/setup.sh), \
                 or set EDGEREC_KAFKA_BOOTSTRAP to a running broker"
            )
        })
}

fn wait_listening(addr: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 5 s");
}

/// A fresh topic with 3 partitions on the shared broker (tests never share topics or groups).
fn topic(name: &str) -> String {
    topic_on(broker(), name)
}

fn topic_on(bootstrap: &str, name: &str) -> String {
    let topic = format!("{name}-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = rt.block_on(admin.create_topics(
        &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ));
    for result in created.expect("create_topics") {
        result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
    topic
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_central-sync"));
    c.env_remove("RUST_LOG")
        .env_remove("EDGEREC_EVENT_LOG")
        .env_remove("EDGEREC_CRASH_AT")
        .arg("--log")
        .arg("warn");
    c
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed ({:?}): {}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `central-sync sync` over the Kafka log into a directory KV, small and fast settings.
fn sync(dir: &Path, log: &str, group: &str, crash_at: Option<&str>) -> Output {
    let mut c = bin();
    c.args(["--json", "--event-log", log, "--db"])
        .arg(dir.join("local.db"))
        .args(["sync", "--group", group, "--kafka-idle-ms", "1500", "--to"])
        .arg(format!("dir:{}", dir.join("kv").display()))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .args(["--epochs", "2", "--dim", "8", "--margin", "1"]);
    if let Some(point) = crash_at {
        c.env("EDGEREC_CRASH_AT", point);
    }
    c.output().expect("run central-sync")
}

/// 30 users x 12 clicks over 40 items, as CSV.
fn write_events(path: &Path) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "user,item,ts,type").unwrap();
    let mut n = 0;
    for u in 0..30 {
        for t in 0..12 {
            let item = (u % 4 + 4 * t) % 40;
            writeln!(
                f,
                "u{u},m{item},{},click",
                978_300_000 + u * 10_000 + t * 60
            )
            .unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn import_and_sync_through_kafka_count_every_event_once_even_after_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let topic = topic("edgerec-sync");
    let log = format!("kafka://{}/{topic}", broker());
    let csv = dir.path().join("events.csv");
    let n = write_events(&csv);
    let imported = ok(&bin()
        .args(["--json", "--event-log", &log, "import"])
        .arg(&csv)
        .output()
        .unwrap());
    assert_eq!(imported["stored"], n);
    // Three messages that are not events: skipped, counted, and the consumer goes on.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for bad in [
        "not json",
        r#"{"user":"u1","item":"m1","ts":5}"#,
        r#"{"user":"u1","item":"m1","ts":978300000,"colour":"red"}"#,
    ] {
        let record = FutureRecord::to(&topic).key("u1").payload(bad);
        rt.block_on(producer.send(record, Duration::from_secs(10)))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // `train` reads the whole topic when no CSV is given (and commits no offsets).
    let trained = ok(&bin()
        .args(["--json", "--event-log", &log, "train", "--out"])
        .arg(dir.path().join("trained"))
        .args(["--no-tune", "--epochs", "1", "--dim", "8"])
        .output()
        .unwrap());
    let distinct: std::collections::HashSet<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(trained["items"], distinct.len(), "{trained}");
    let group = format!("g1-{}", std::process::id());

    // Crash after reading, before training: nothing committed, nothing published.
    let crashed = sync(dir.path(), &log, &group, Some("after-consume"));
    assert_eq!(crashed.status.code(), Some(9));
    // Crash after publishing, before committing: the model is out, the offsets are not.
    let crashed = sync(dir.path(), &log, &group, Some("before-commit"));
    assert_eq!(crashed.status.code(), Some(9));
    // The next run reads the same messages again: all duplicates, no new events, no new model.
    let again = ok(&sync(dir.path(), &log, &group, None));
    assert_eq!(again["kafka"]["stored"], 0, "{again}");
    assert_eq!(again["kafka"]["duplicates"], n, "{again}");
    assert_eq!(again["kafka"]["malformed"], 3, "{again}");
    assert_eq!(again["total_events"], n, "every event exactly once");
    assert_eq!(again["status"], "noop");
    // Committed now: a further run reads nothing.
    let quiet = ok(&sync(dir.path(), &log, &group, None));
    assert_eq!(quiet["kafka"]["messages"], 0, "{quiet}");
    assert_eq!(quiet["total_events"], n);
}

/// `central-sync serve` with the Kafka sink on a free port.
fn serve(log: &str, db: &Path) -> (Child, String) {
    serve_at(log, db, "127.0.0.1:0")
}

/// `central-sync serve` with the Kafka sink on `addr`; returns once it listens.
fn serve_at(log: &str, db: &Path, addr: &str) -> (Child, String) {
    let mut child = bin()
        .args(["--event-log", log, "--db"])
        .arg(db)
        .args(["serve", "--addr", addr])
        .env("EDGEREC_INGEST_TOKEN", "kafka-test-token")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// One POST to the ingest, as the edge sends it: the status and JSON answer, or `None` when
/// the connection failed.
fn send(addr: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let answer = ureq::post(&format!("http://{addr}/v1/events"))
        .set("Authorization", "Bearer kafka-test-token")
        .set("Content-Type", "application/json")
        .timeout(Duration::from_secs(20))
        .send_string(body);
    match answer {
        Ok(r) => Some((r.status(), r.into_json().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Some((code, r.into_json().unwrap_or_default())),
        Err(_) => None,
    }
}

fn post(addr: &str, body: &str) -> (u16, serde_json::Value) {
    send(addr, body).expect("the ingest answers")
}

#[test]
fn serve_acknowledges_after_the_broker_and_retries_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = topic("edgerec-serve");
    let log = format!("kafka://{}/{topic}", broker());
    let (mut server, addr) = serve(&log, &dir.path().join("serve.db"));
    let mut batches = Vec::new();
    for u in 0..20 {
        let events: Vec<String> = (0..10)
            .map(|t| {
                format!(
                    r#"{{"id":"v{u}:{t}","user":"v{u}","item":"m{}","ts":{},"type":"click"}}"#,
                    (u + t) % 25,
                    978_300_000 + u * 1000 + t * 60
                )
            })
            .collect();
        batches.push(format!("[{}]", events.join(",")));
    }
    for body in &batches {
        let (status, answer) = post(&addr, body);
        assert_eq!(
            (status, answer["stored"].as_u64()),
            (200, Some(10)),
            "{answer}"
        );
    }
    // The edge retries a batch after a 503 it did not see stored: the same ids again.
    let (status, _) = post(&addr, &batches[3]);
    assert_eq!(status, 200);
    let (status, answer) = post(&addr, r#"[{"user":"v1","item":"m1","ts":5}]"#);
    assert_eq!(status, 400, "{answer}");
    server.kill().unwrap();
    server.wait().unwrap();

    let group = format!("g2-{}", std::process::id());
    let first = ok(&sync(dir.path(), &log, &group, None));
    assert_eq!(first["kafka"]["messages"], 210, "{first}");
    assert_eq!(
        first["kafka"]["duplicates"], 10,
        "the retried batch is stored once"
    );
    assert_eq!(first["total_events"], 200);
    assert_eq!(first["status"], "published", "{first}");
}

/// The status of one POST; `None` when the connection failed.
fn try_post(addr: &str, body: &str) -> Option<u16> {
    send(addr, body).map(|(status, _)| status)
}

#[test]
fn events_acknowledged_around_a_killed_ingest_are_trained_on_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = topic("edgerec-kill");
    let log = format!("kafka://{}/{topic}", broker());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let db = dir.path().join("serve.db");
    let (mut server, _) = serve_at(&log, &db, &addr);
    let poster = post_in_background(&addr, "k");
    std::thread::sleep(Duration::from_millis(400));
    server.kill().unwrap(); // SIGKILL, mid-stream
    server.wait().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (mut server, _) = serve_at(&log, &db, &addr);
    let (acknowledged, failures) = poster.join().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(acknowledged, 300);
    assert!(failures > 0, "the ingest was down while events were posted");

    let group = format!("g3-{}", std::process::id());
    let report = ok(&sync(dir.path(), &log, &group, None));
    assert_eq!(
        report["total_events"], 300,
        "every acknowledged event, once: {report}"
    );
    assert_eq!(report["kafka"]["malformed"], 0);
}

/// Posts 60 batches of 5 events (ids `{tag}{batch}:{i}`) like the edge: a batch is sent again,
/// with the same ids, until the ingest acknowledges it. Returns (events acknowledged, failed
/// attempts).
fn post_in_background(addr: &str, tag: &str) -> std::thread::JoinHandle<(usize, usize)> {
    let (addr, tag) = (addr.to_string(), tag.to_string());
    std::thread::spawn(move || {
        let (mut acknowledged, mut failures) = (0usize, 0usize);
        for b in 0..60 {
            let events: Vec<String> = (0..5)
                .map(|i| {
                    format!(
                        r#"{{"id":"{tag}{b}:{i}","user":"v{}","item":"m{}","ts":{},"type":"click"}}"#,
                        b % 12,
                        (b + i) % 20,
                        978_300_000 + b * 60 + i
                    )
                })
                .collect();
            let body = format!("[{}]", events.join(","));
            while try_post(&addr, &body) != Some(200) {
                failures += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            acknowledged += 5;
            std::thread::sleep(Duration::from_millis(20));
        }
        (acknowledged, failures)
    })
}

#[test]
fn events_acknowledged_while_the_broker_restarts_are_trained_on_exactly_once() {
    // Its own broker (this one is killed), storing in SQLite so a restart keeps the log.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut broker = spawn_tansu(port, "sqlite://broker.db", dir.path());
    wait_listening(&bootstrap);
    let topic = topic_on(&bootstrap, "edgerec-broker");
    let log = format!("kafka://{bootstrap}/{topic}");
    let (mut server, addr) = serve(&log, &dir.path().join("serve.db"));
    let poster = post_in_background(&addr, "r");
    std::thread::sleep(Duration::from_millis(500));
    broker.kill().unwrap(); // SIGKILL
    broker.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut broker = spawn_tansu(port, "sqlite://broker.db", dir.path());
    wait_listening(&bootstrap);
    let (acknowledged, _) = poster.join().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(acknowledged, 300);
    let group = format!("g4-{}", std::process::id());
    let report = ok(&sync(dir.path(), &log, &group, None));
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert_eq!(
        report["total_events"], 300,
        "every acknowledged event, once: {report}"
    );
}
