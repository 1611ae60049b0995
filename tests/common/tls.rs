//! A certificate authority of a test's own (openssl), and certificates it signs for hosts
//! named by IP address.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in `dir`: `NAME.pem` and `NAME.key`.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

impl TestCa {
    /// Makes the CA `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca = TestCa {
            dir: dir.to_owned(),
            name: name.to_owned(),
        };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name} CA"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
        ca
    }

    /// The CA's certificate (PEM), what clients trust.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate for the host at `ip` that this CA signs: `(certificate, key)`.
    pub fn issue(&self, host: &str, ip: &str) -> (PathBuf, PathBuf) {
        let extensions = self.dir.join(format!("{host}.ext"));
        std::fs::write(&extensions, format!("subjectAltName=IP:{ip}\n")).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={ip}"),
            "-keyout",
            &format!("{host}.key"),
            "-out",
            &format!("{host}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{host}.csr"),
            "-CA",
            &format!("{}.pem", self.name),
            "-CAkey",
            &format!("{}.key", self.name),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{host}.ext"),
            "-out",
            &format!("{host}.pem"),
        ]);
        (
            self.dir.join(format!("{host}.pem")),
            self.dir.join(format!("{host}.key")),
        )
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
