//! The module rules, checked over the source tree and the migrations (no database needed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{KINDS, MODULES, Module, SUBSCRIPTIONS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The words of a text: runs of `[A-Za-z0-9_]`.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect()
}

/// Tables and views the migrations of one backend create.
fn created(backend: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("migrations").join(backend)).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let words = words(&sql);
        for pair in words.windows(3) {
            if pair[0] == "CREATE" && (pair[1] == "TABLE" || pair[1] == "VIEW") {
                names.insert(pair[2].to_owned());
            }
        }
    }
    names
}

/// The relations a module's SQL names after FROM, JOIN, INTO or UPDATE (keywords in capitals,
/// as every query here is written), among `known`.
fn named_relations(files: &[PathBuf], known: &BTreeSet<String>) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let words = words(&text);
        for pair in words.windows(2) {
            if matches!(pair[0], "FROM" | "JOIN" | "INTO" | "UPDATE") && known.contains(pair[1]) {
                found.entry(pair[1].to_owned()).or_insert_with(|| file.clone());
            }
        }
    }
    found
}

fn module_files(module: &Module) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root().join("src").join(module.dir), &mut files);
    files
}

#[test]
fn every_table_has_one_owner() {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for module in MODULES {
        for name in module.tables.iter().chain(module.views) {
            if let Some(other) = owners.insert(name, module.name) {
                panic!("{name} is owned by both {other} and {}", module.name);
            }
        }
    }
    let sqlite = created("sqlite");
    assert_eq!(sqlite, created("postgres"), "both backends create the same tables and views");
    let owned: BTreeSet<String> = owners.keys().map(|name| name.to_string()).collect();
    let unowned: Vec<_> = sqlite.difference(&owned).collect();
    assert!(unowned.is_empty(), "tables without an owning module in src/modules/mod.rs: {unowned:?}");
    let missing: Vec<_> = owned.difference(&sqlite).collect();
    assert!(missing.is_empty(), "listed but never created: {missing:?}");
}

#[test]
fn modules_touch_only_their_tables() {
    let known = created("sqlite");
    let mut in_modules = BTreeSet::new();
    for module in MODULES {
        let files = module_files(module);
        in_modules.extend(files.iter().cloned());
        for (relation, file) in named_relations(&files, &known) {
            let allowed = module.tables.contains(&relation.as_str())
                || module.views.contains(&relation.as_str())
                || module.reads.contains(&relation.as_str());
            assert!(
                allowed,
                "{} names {relation} (in {}), which it neither owns nor reads",
                module.name,
                file.display()
            );
        }
    }
    // The wiring outside the modules (app, http, db, events, main) names no table at all.
    let mut all = Vec::new();
    rust_files(&root().join("src"), &mut all);
    let outside: Vec<PathBuf> = all.into_iter().filter(|file| !in_modules.contains(file)).collect();
    let named = named_relations(&outside, &known);
    assert!(named.is_empty(), "SQL outside any module: {named:?}");
}

#[test]
fn module_imports_go_down() {
    let levels: BTreeMap<&str, u8> = MODULES.iter().map(|m| (m.name, m.level)).collect();
    for module in MODULES {
        for file in module_files(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (index, _) in text.match_indices("crate::") {
                let path = &text[index + "crate::".len()..];
                let path = path.strip_prefix("modules::").unwrap_or(path);
                let name: String = path.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let Some(&level) = levels.get(name.as_str()) else { continue };
                if name == module.name {
                    continue;
                }
                let allowed = level < module.level || (module.level == 0 && level == 0);
                assert!(
                    allowed,
                    "{} (level {}) uses {name} (level {level}) in {}: imports go down, events go up",
                    module.name,
                    module.level,
                    file.display()
                );
            }
        }
    }
}

#[test]
fn job_kinds_are_unique_and_named_after_their_module() {
    let mut seen = BTreeSet::new();
    for kind in KINDS {
        assert!(seen.insert(kind.name), "job kind {} is listed twice", kind.name);
        let module = kind.name.split('.').next().unwrap();
        assert!(MODULES.iter().any(|m| m.name == module), "job kind {} names no module", kind.name);
    }
}

#[test]
fn every_subscriber_is_a_listed_job_kind() {
    for (event, kind) in SUBSCRIPTIONS {
        assert!(
            KINDS.iter().any(|k| k.name == kind.name),
            "{} (on {event}) is not in KINDS: the runner could not find it",
            kind.name
        );
    }
}
