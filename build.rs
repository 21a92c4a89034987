//! Build script: prepares the web dashboard that `src/web/assets.rs` embeds.
//!
//! 1. Runs `npm ci --ignore-scripts` in `assets/` when `assets/node_modules` is
//!    missing or older than `assets/package-lock.json` (the lockfile pins
//!    Bootstrap, Chart.js and swagger-ui-dist; no third-party file is committed).
//! 2. Copies only the dist files the pages use into `$OUT_DIR/web/vendor/`,
//!    without their source-map comments (the maps are not shipped).
//! 3. Copies the dashboard's own files from `assets/src/` into `$OUT_DIR/web/`,
//!    writing the versioned vendor prefix into `index.html`.
//! 4. Precompresses every text file as `.gz` (gzip level 9) and `.br`
//!    (brotli quality 11), so the server never compresses at run time.
//!
//! It never reaches the network except through `npm ci`, and it fails with one
//! line naming what to install when npm is missing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The third-party files the dashboard loads: (package dir, file inside it, served name).
const VENDOR_FILES: &[(&str, &str, &str)] = &[
    (
        "bootstrap",
        "dist/css/bootstrap.min.css",
        "bootstrap.min.css",
    ),
    (
        "bootstrap",
        "dist/js/bootstrap.bundle.min.js",
        "bootstrap.bundle.min.js",
    ),
    ("chart.js", "dist/chart.umd.min.js", "chart.umd.min.js"),
    // The API reference page at /api/docs.
    (
        "swagger-ui-dist",
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js",
    ),
    ("swagger-ui-dist", "swagger-ui.css", "swagger-ui.css"),
];

/// Placeholder in `index.html` replaced by `/assets/vendor/<version>`.
const VENDOR_PLACEHOLDER: &str = "%VENDOR%";

fn main() {
    if let Err(message) = run() {
        // One line, so it is the first thing a person reads in cargo's output.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env("OUT_DIR")?).join("web");
    let assets = root.join("assets");
    let lockfile = assets.join("package-lock.json");
    let own = assets.join("src");

    println!("cargo:rerun-if-changed=assets/package.json");
    println!("cargo:rerun-if-changed=assets/package-lock.json");
    println!("cargo:rerun-if-changed=assets/src");
    println!("cargo:rerun-if-changed=build.rs");

    let node_modules = assets.join("node_modules");
    if needs_install(&node_modules, &lockfile) {
        npm_ci(&assets)?;
    }

    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    let version = vendor_version(&node_modules)?;
    let vendor_dir = out.join("vendor").join(&version);
    fs::create_dir_all(&vendor_dir)
        .map_err(|e| format!("cannot create {}: {e}", vendor_dir.display()))?;
    for (package, file, name) in VENDOR_FILES {
        let source = node_modules.join(package).join(file);
        let text = fs::read_to_string(&source).map_err(|e| {
            format!(
                "missing {} ({e}); delete assets/node_modules and build again",
                source.display()
            )
        })?;
        write_compressed(&vendor_dir.join(name), strip_source_map(&text).as_bytes())?;
    }

    let prefix = format!("/assets/vendor/{version}");
    let mut entries: Vec<PathBuf> = fs::read_dir(&own)
        .map_err(|e| format!("cannot read {}: {e}", own.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("bad file name {}", path.display()))?;
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bytes = if name.ends_with(".html") {
            String::from_utf8_lossy(&bytes)
                .replace(VENDOR_PLACEHOLDER, &prefix)
                .into_bytes()
        } else {
            bytes
        };
        write_compressed(&out.join(name), &bytes)?;
    }
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

/// True when `node_modules` is missing or older than the lockfile. npm writes
/// `node_modules/.package-lock.json` on every install, so its time is the
/// install's time.
fn needs_install(node_modules: &Path, lockfile: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&node_modules.join(".package-lock.json")),
        modified(lockfile),
    ) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    }
}

fn npm_ci(assets: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(assets)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`npm ci` in {} failed ({s}); the dashboard's Bootstrap and Chart.js come from npm",
            assets.display()
        )),
        Err(_) => Err(
            "npm not found: install Node.js and npm (e.g. `apt-get install nodejs npm`) to build the web dashboard"
                .to_string(),
        ),
    }
}

/// A path segment naming the vendor versions, e.g. `bs5.3.9-chart4.6.1`, so a
/// new lockfile changes every vendor URL and long-lived caches stay correct.
fn vendor_version(node_modules: &Path) -> Result<String, String> {
    let version = |package: &str| -> Result<String, String> {
        let path = node_modules.join(package).join("package.json");
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("bad JSON in {}: {e}", path.display()))?;
        value["version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no version in {}", path.display()))
    };
    Ok(format!(
        "bs{}-chart{}-swagger{}",
        version("bootstrap")?,
        version("chart.js")?,
        version("swagger-ui-dist")?
    ))
}

/// The file without its `sourceMappingURL` comment (we do not ship the maps,
/// so a browser with developer tools open would otherwise request a 404).
fn strip_source_map(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let l = line.trim_start();
            !(l.starts_with("//# sourceMappingURL=") || l.starts_with("/*# sourceMappingURL="))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Write `bytes` to `path`, and for text formats also `path.gz` and `path.br`.
fn write_compressed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    fs::write(path, bytes).map_err(fail)?;
    let compressible = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("html" | "css" | "js" | "svg" | "json" | "txt")
    );
    if !compressible {
        return Ok(());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).map_err(fail)?;
    let gz = gz.finish().map_err(fail)?;
    let mut br = Vec::new();
    {
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            lgwin: 22,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &bytes[..], &mut br, &params).map_err(fail)?;
    }
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    fs::write(with_suffix(".gz"), gz).map_err(fail)?;
    fs::write(with_suffix(".br"), br).map_err(fail)?;
    Ok(())
}
