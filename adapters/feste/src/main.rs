//! feste-adapter: Feste (the seed's Rust implementation) behind the suite's adapter
//! protocol (SPEC §adapter-protocol), so the language-neutral vectors judge it.
//!
//! One request per line on stdin, one reply per line on stdout. Feste prints progress
//! with `println!` (tokenizer training, checkpoints, the data loader), so the protocol
//! keeps its own duplicate of the original stdout and file descriptor 1 is pointed at
//! stderr: nothing Feste prints can corrupt a reply.
//!
//! The adapter maps layouts and calls Feste's public API; it never computes what Feste
//! is asked for (see README, "Feste judged by the suite").

mod bridge;
mod case;
mod ops;
mod safetensors;

use case::{AdapterError, Case, Reply};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::io::FromRawFd;
use std::path::Path;

extern "C" {
    fn dup(fd: i32) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
}

const HELP: &str = "\
feste-adapter: Feste behind the feste-spec adapter protocol (SPEC §adapter-protocol).

Usage: feste-adapter            speak the protocol on stdin/stdout
       feste-adapter --list     print the operations served, one per line
       feste-adapter --help

Run by the suite's runner, for example
  pytest --pyargs conformance.vectors --vectors DIR \\
      --adapter adapters/feste/target/release/feste-adapter \\
      --expected-failures adapters/feste/expected-failures.txt
Build it with adapters/feste/build.sh (FESTE_SRC names Feste's source tree).
Logs and everything Feste prints go to stderr.";

/// The protocol's stdout: a duplicate of fd 1 taken before fd 1 is pointed at stderr.
fn protocol_stdout() -> File {
    unsafe {
        let fd = dup(1);
        if fd < 0 || dup2(2, 1) < 0 {
            eprintln!("feste-adapter: cannot separate the protocol from Feste's prints (dup/dup2 failed)");
            std::process::exit(2);
        }
        File::from_raw_fd(fd)
    }
}

fn send(out: &mut File, v: &Value) {
    let mut line = serde_json::to_vec(v).expect("JSON reply");
    line.push(b'\n');
    if out.write_all(&line).and_then(|_| out.flush()).is_err() {
        // the runner has gone: nothing left to answer
        std::process::exit(0);
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Run one case: read it, dispatch on its operation, write the outputs.
fn run(case_dir: &Path, out_dir: &Path) -> Result<Reply, AdapterError> {
    let case = Case::load(case_dir)?;
    let op = case.operation();
    if case.dtype() == "float64" {
        return Ok(Reply::Skipped("Feste computes in f32 only (its Tensor holds Vec<f32>); float64 is optional".into()));
    }
    let handler = ops::handler(&op).ok_or_else(|| AdapterError(format!("operation {op} is not served")))?;
    match handler(&case)? {
        Reply::Ok(mut outputs) => {
            outputs.widen_for(&case);
            outputs.write(out_dir)?;
            Ok(Reply::Ok(outputs))
        }
        other => Ok(other),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        for op in ops::OPERATIONS {
            println!("{}", op.0);
        }
        return;
    }
    if let Some(a) = args.first() {
        eprintln!("feste-adapter: unknown argument {a:?} (see --help)");
        std::process::exit(2);
    }
    let mut out = protocol_stdout();
    // Feste's panics (asserts on bad input) are answered, not fatal; the hook's
    // message still goes to stderr.
    send(
        &mut out,
        &json!({
            "type": "hello",
            "protocol": 1,
            "implementation": {"name": "feste", "version": ops::FESTE_VERSION},
            "operations": ops::OPERATIONS.iter().map(|o| o.0).collect::<Vec<_>>(),
        }),
    );
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(_) => break,
        };
        if line.trim().is_empty() {
            continue;
        }
        let req: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("feste-adapter: request is not JSON ({e}): {line}");
                std::process::exit(2);
            }
        };
        match req["type"].as_str() {
            Some("bye") => break,
            Some("run") => {
                let id = req["id"].clone();
                let (case_dir, out_dir) = match (req["case"].as_str(), req["out"].as_str()) {
                    (Some(c), Some(o)) => (c.to_string(), o.to_string()),
                    _ => {
                        send(&mut out, &json!({"type": "error", "id": id, "code": "adapter.bad-request",
                                               "message": "run needs case and out"}));
                        continue;
                    }
                };
                let result = std::panic::catch_unwind(|| run(Path::new(&case_dir), Path::new(&out_dir)));
                let reply = match result {
                    Ok(Ok(Reply::Ok(_))) => json!({"type": "ok", "id": id}),
                    Ok(Ok(Reply::Error { code, message })) => {
                        json!({"type": "error", "id": id, "code": code, "message": message})
                    }
                    Ok(Ok(Reply::Skipped(reason))) => json!({"type": "skipped", "id": id, "reason": reason}),
                    Ok(Err(AdapterError(msg))) => {
                        eprintln!("feste-adapter: {case_dir}: {msg}");
                        json!({"type": "error", "id": id, "code": "adapter.failed", "message": msg})
                    }
                    Err(p) => {
                        let msg = panic_text(&*p);
                        json!({"type": "error", "id": id, "code": "feste.panic",
                               "message": format!("Feste panicked: {msg}")})
                    }
                };
                send(&mut out, &reply);
            }
            Some("time") => {
                let id = req["id"].clone();
                send(&mut out, &ops::time(id, &req));
            }
            other => {
                eprintln!("feste-adapter: unknown request type {other:?}: {line}");
                std::process::exit(2);
            }
        }
    }
}
