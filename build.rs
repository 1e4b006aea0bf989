//! Builds the web pages (web/, Vite + TypeScript) into OUT_DIR and writes the table the server
//! embeds them from (`src/web.rs`), each file with a gzip copy made here once.
//!
//! Needs web/node_modules (`npm ci` in web/, done by scripts/install-deps.sh). Without it the
//! binary still builds, with a one-page notice in place of the UI and a cargo warning, so that a
//! Rust-only build (a crate's tests, clippy on a machine without Node) keeps working.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    for input in ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json", "public"]
    {
        println!("cargo:rerun-if-changed=web/{input}");
    }
    println!("cargo:rerun-if-changed=web/node_modules/.package-lock.json");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dist = out.join("web");
    if dist.exists() {
        fs::remove_dir_all(&dist).expect("clearing the old web build");
    }
    fs::create_dir_all(&dist).expect("creating the web build directory");

    if web.join("node_modules/.bin/vite").exists() {
        let status = Command::new("npm")
            .args(["run", "--silent", "build", "--", "--outDir"])
            .arg(&dist)
            .args(["--emptyOutDir", "--logLevel", "warn"])
            .current_dir(&web)
            .status()
            .expect("running npm (is Node.js installed?)");
        assert!(status.success(), "the web build failed (cd web && npm run build)");
    } else {
        println!("cargo:warning=web UI not built: web/node_modules is missing (run scripts/install-deps.sh run)");
        fs::write(dist.join("index.html"), NOT_BUILT).expect("writing the placeholder page");
    }

    let mut files = Vec::new();
    collect(&dist, &mut files);
    files.sort();
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for file in &files {
        let relative = file.strip_prefix(&dist).expect("under dist").to_str().expect("UTF-8 path").replace('\\', "/");
        let bytes = fs::read(file).expect("reading a built file");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("gzip in memory");
        let gz = gz.finish().expect("gzip in memory");
        let gz_path = PathBuf::from(format!("{}.gz", file.display()));
        fs::write(&gz_path, &gz).expect("writing the gzip copy");
        writeln!(
            table,
            "    Asset {{ path: {relative:?}, body: include_bytes!({:?}), gzip: include_bytes!({:?}) }},",
            file.display().to_string(),
            gz_path.display().to_string(),
        )
        .expect("writing to a String");
    }
    table.push_str("];\n");
    fs::write(out.join("web_assets.rs"), table).expect("writing the asset table");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("reading the web build") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_none_or(|ext| ext != "gz") {
            files.push(path);
        }
    }
}

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Aether</title>\
<body style=\"font-family:system-ui;padding:2rem\"><h1>Aether</h1><p>This binary was built without its web \
pages (web/node_modules was missing). Run <code>scripts/install-deps.sh run</code> and rebuild. The API, HLS \
and chat work as usual.</p></body></html>";
