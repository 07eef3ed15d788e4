//! The source layout's rules (docs/DESIGN.md, "Rules the layout keeps"),
//! checked on the source text so that a change that breaks one fails here
//! rather than in review.

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file under `src/`, as (path relative to `src/`, text).
fn tree() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Lines of `text` that are code (not comments), with their numbers.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

#[test]
fn lower_layers_import_nothing_above_them() {
    let rules: &[(&str, &[&str])] = &[
        (
            "util/",
            &[
                "crate::store",
                "crate::layer",
                "crate::rootfs",
                "crate::image",
                "crate::container",
                "crate::maintenance",
            ],
        ),
        (
            "store/",
            &[
                "crate::layer",
                "crate::rootfs",
                "crate::image",
                "crate::container",
                "crate::maintenance",
            ],
        ),
        (
            "layer/",
            &[
                "crate::rootfs",
                "crate::image",
                "crate::container",
                "crate::maintenance",
            ],
        ),
        (
            "rootfs/",
            &["crate::image", "crate::container", "crate::maintenance"],
        ),
        ("image/", &["crate::container", "crate::maintenance"]),
        ("container/", &["crate::maintenance"]),
    ];
    let mut broken = Vec::new();
    for (rel, text) in tree() {
        for (folder, forbidden) in rules {
            if !rel.starts_with(folder) {
                continue;
            }
            for (n, line) in code_lines(&text) {
                for f in *forbidden {
                    if line.contains(f) {
                        broken.push(format!("src/{rel}:{n}: {line}"));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports from a higher layer:\n{}",
        broken.join("\n")
    );
}

#[test]
fn sql_and_pack_files_have_one_home_each() {
    let mut broken = Vec::new();
    for (rel, text) in tree() {
        for (n, line) in code_lines(&text) {
            let sql = [
                "\"SELECT ",
                "\"INSERT ",
                "\"UPDATE ",
                "\"DELETE ",
                "execute(",
            ]
            .iter()
            .any(|k| line.contains(k));
            if sql && !rel.starts_with("store/index/") {
                broken.push(format!("SQL outside store/index/: src/{rel}:{n}: {line}"));
            }
            if line.contains("Mmap::map") && rel != "store/packs.rs" {
                broken.push(format!("a pack map outside store/packs.rs: src/{rel}:{n}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn files_stay_small_and_the_api_curated() {
    let mut broken = Vec::new();
    for (rel, text) in tree() {
        let lines = text.lines().count();
        if lines > 900 {
            broken.push(format!("src/{rel} has {lines} lines (at most ~900)"));
        }
        if rel == "lib.rs" {
            let public_mods = text.lines().filter(|l| l.starts_with("pub mod ")).count();
            if public_mods > 1 {
                broken.push(format!(
                    "lib.rs has {public_mods} `pub mod`s: re-export instead"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
