//! With the cargo feature `libjpeg`, builds the libjpeg shim (`csrc/jpeg_gray.c`) and links
//! the system's libjpeg-turbo, or fails the build when libjpeg's headers are missing (Debian:
//! `libjpeg62-turbo-dev`). Without the feature there is nothing to build: every JPEG decodes
//! with zune-jpeg. Which decoder a build uses depends on its features alone, never on what the
//! building machine happens to have installed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "libjpeg")]
    libjpeg::build();
}

#[cfg(feature = "libjpeg")]
mod libjpeg {
    /// Compiles the shim and links libjpeg; exits with an error (failing the build) when the
    /// shim does not compile, which is nearly always a missing `jpeglib.h`.
    pub fn build() {
        println!("cargo:rerun-if-changed=csrc/jpeg_gray.c");
        let built = cc::Build::new()
            .file("csrc/jpeg_gray.c")
            .opt_level(2)
            .warnings(true)
            .cargo_warnings(false)
            .try_compile("umcl_jpeg_gray");
        if let Err(e) = built {
            eprintln!(
                "error: umcl-data: the feature `libjpeg` needs libjpeg's headers (jpeglib.h), \
                 and csrc/jpeg_gray.c did not compile.\n\
                 Install them (Debian/Ubuntu: `apt-get install libjpeg62-turbo-dev`, or \
                 `libjpeg-dev`), or build without the feature (for the umcl CLI: \
                 `--no-default-features`), which decodes JPEG with zune-jpeg.\n\
                 The compiler said: {e}"
            );
            std::process::exit(1);
        }
        // Link libjpeg statically where its archive is there (the Debian package ships
        // libjpeg.a), so binaries run on machines without libjpeg; else dynamically.
        // `libjpeg-shared`: a shared object (the Python extension) cannot take Debian's
        // libjpeg.a, which is not position-independent.
        let archive = if cfg!(feature = "libjpeg-shared") {
            None
        } else {
            static_libjpeg_dir()
        };
        match archive {
            Some(dir) => {
                println!("cargo:rustc-link-search=native={}", dir.display());
                println!("cargo:rustc-link-lib=static=jpeg");
            }
            None => println!("cargo:rustc-link-lib=jpeg"),
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
}
