//! The real-node cluster's certificates, made with `openssl`: a CA, the
//! apiserver's serving certificate naming every address it is reached at, and
//! the ServiceAccount signing key.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::netns::run;

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn apiserver_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn apiserver_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Makes the CA, the ServiceAccount key pair and an apiserver certificate
    /// for `ips` and the in-cluster names of the `kubernetes` Service.
    pub fn create(dir: &Path, ips: &[String]) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
        openssl(&["genrsa", "-out", "ca.key", "2048"])?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=ferrolb-test-ca",
            "-days",
            "7",
            "-out",
            "ca.crt",
        ])?;
        openssl(&["genrsa", "-out", "apiserver.key", "2048"])?;
        openssl(&[
            "req",
            "-new",
            "-key",
            "apiserver.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "apiserver.csr",
        ])?;
        let mut names: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect();
        names.extend(ips.iter().map(|ip| format!("IP:{ip}")));
        std::fs::write(
            dir.join("apiserver.ext"),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
                names.join(",")
            ),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            "apiserver.ext",
            "-out",
            "apiserver.crt",
        ])?;
        openssl(&["genrsa", "-out", "sa.key", "2048"])?;
        openssl(&["rsa", "-pubout", "-in", "sa.key", "-out", "sa.pub"])?;
        Ok(pki)
    }
}
