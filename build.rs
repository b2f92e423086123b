//! Tells the end-to-end tests whether a Kafka-protocol broker (tansu) is here to run against:
//! with `cfg(emoflow_broker)` they run, without it they show as ignored, with the reason.
//! `EMOFLOW_REQUIRE_BROKER=1` (CI) always runs them, so a missing broker fails them instead.

use std::path::PathBuf;

include!("tests/support/find_tansu.rs");

fn main() {
    println!("cargo::rerun-if-changed=tests/support/find_tansu.rs");
    println!("cargo::rustc-check-cfg=cfg(emoflow_broker)");
    println!("cargo::rerun-if-env-changed=EMOFLOW_REQUIRE_BROKER");
    println!("cargo::rerun-if-env-changed=TANSU");
    println!("cargo::rerun-if-env-changed=PATH");
    let required = std::env::var("EMOFLOW_REQUIRE_BROKER").is_ok_and(|v| v == "1");
    match tansu_binary() {
        Some(path) => {
            println!("cargo::rerun-if-changed={}", path.display());
            println!("cargo::rustc-cfg=emoflow_broker");
        }
        None => {
            // Where `cargo install` puts it: the tests run once it appears there.
            if let Some(home) = std::env::var_os("HOME") {
                let bin = PathBuf::from(home).join(".cargo/bin");
                println!("cargo::rerun-if-changed={}", bin.display());
            }
            if required {
                println!("cargo::rustc-cfg=emoflow_broker");
            }
        }
    }
}
