//! `scripts/module-graph.py` holds the crate to its layering; these tests show that it
//! passes on the crate as it is and fails on a tree that breaks the rule.

use std::path::Path;
use std::process::{Command, Output};

fn graph(src: &Path) -> Output {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/module-graph.py"
        ))
        .arg("--src")
        .arg(src)
        .output()
        .expect("python3 runs scripts/module-graph.py")
}

fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_crate_has_no_cycle_and_no_upward_use() {
    let output = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("no cycle, no upward use"), "{stdout}");
}

#[test]
fn an_upward_use_and_a_cycle_fail_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src, "lib.rs", "pub mod config;\npub mod startup;\n");
    write(
        &src,
        "config/mod.rs",
        "// crate::startup in a comment does not count\nuse crate::{startup::Server, secret};\n",
    );
    write(&src, "startup.rs", "use crate::config::Settings;\n");
    write(&src, "secret.rs", "");
    let output = graph(&src);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("upward: config -> startup at src/config/mod.rs:2"),
        "{stderr}"
    );
    assert!(stderr.contains("cycle among: config, startup"), "{stderr}");
}

#[test]
fn a_module_in_no_layer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src, "lib.rs", "pub mod gadgets;\n");
    write(&src, "gadgets.rs", "");
    let output = graph(&src);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`gadgets` is in no layer"), "{stderr}");
}
