//! Builds the libjpeg shim (`csrc/jpeg_gray.c`) when the system has libjpeg's headers
//! (Debian: `libjpeg62-turbo-dev`) and sets `cfg(umcl_libjpeg)`; without them (or with
//! `UMCL_NO_LIBJPEG=1`) the crate decodes every JPEG with zune-jpeg, and says so.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(umcl_libjpeg)");
    println!("cargo:rerun-if-changed=csrc/jpeg_gray.c");
    println!("cargo:rerun-if-env-changed=UMCL_NO_LIBJPEG");
    if std::env::var_os("UMCL_NO_LIBJPEG").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("cargo:warning=umcl-data: UMCL_NO_LIBJPEG is set, decoding JPEG with zune-jpeg");
        return;
    }
    let built = cc::Build::new()
        .file("csrc/jpeg_gray.c")
        .opt_level(2)
        .warnings(true)
        .cargo_warnings(false)
        .try_compile("umcl_jpeg_gray");
    match built {
        Ok(()) => {
            // Link libjpeg statically where its archive is there (the Debian package ships
            // libjpeg.a), so binaries run on machines without libjpeg; else dynamically.
            match static_libjpeg_dir() {
                Some(dir) => {
                    println!("cargo:rustc-link-search=native={}", dir.display());
                    println!("cargo:rustc-link-lib=static=jpeg");
                }
                None => println!("cargo:rustc-link-lib=jpeg"),
            }
            println!("cargo:rustc-cfg=umcl_libjpeg");
        }
        Err(e) => println!(
            "cargo:warning=umcl-data: libjpeg headers not found (install libjpeg62-turbo-dev), \
             decoding JPEG with zune-jpeg instead ({e})"
        ),
    }
}

/// The folder of `libjpeg.a`, as the C compiler finds it (`-print-file-name`).
fn static_libjpeg_dir() -> Option<std::path::PathBuf> {
    let compiler = cc::Build::new().try_get_compiler().ok()?;
    let out = compiler
        .to_command()
        .arg("-print-file-name=libjpeg.a")
        .output()
        .ok()?;
    let path = std::path::PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // Without the archive the compiler echoes the bare name back.
    if path.is_absolute() && path.is_file() {
        path.parent().map(std::path::Path::to_path_buf)
    } else {
        None
    }
}
