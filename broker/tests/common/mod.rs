//! A broker over a scratch data directory, on a loopback port, for the tests to talk to.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use eddy_broker::{Broker, BrokerConfig, Listener};
use eddy_log::{Log, LogOptions};

pub mod wire;

pub struct TestBroker {
    pub log: Log,
    pub addr: SocketAddr,
    pub runtime: tokio::runtime::Runtime,
    listener: Option<Listener>,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        Self::start_with(|_| {})
    }

    pub fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("data"), LogOptions::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (listener, addr) = runtime.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let mut config = BrokerConfig::advertising(addr);
            configure(&mut config);
            (Broker::new(log.clone(), config).serve(l).unwrap(), addr)
        });
        TestBroker {
            log,
            addr,
            runtime,
            listener: Some(listener),
            dir,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            self.runtime.block_on(l.stop());
        }
    }
}

/// Whether a client tool is here. On CI (`CI` set) a missing client is a failure: `.ci/run`
/// installs them all (through `./dev setup`); elsewhere the test says what to install and
/// passes.
pub fn have(what: &str, check: &mut Command) -> bool {
    let ok = check.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing on CI; ./dev setup installs it"
        );
        eprintln!("skipped: {what} is not installed (./dev setup installs it)");
    }
    ok
}

pub fn have_python_module(module: &str) -> bool {
    have(
        &format!("python module {module}"),
        Command::new("python3").args(["-c", &format!("import {module}")]),
    )
}

/// Runs a client script from `tests/clients/` with the broker's address and `args`; fails the
/// test with the script's output if it fails. Returns its standard output.
pub fn run_script(script: &str, bootstrap: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg(bootstrap)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
