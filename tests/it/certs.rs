//! A test CA and certificates it signs, made with openssl in a scratch
//! directory (the Flight, fleet and TLS tests).

use std::path::{Path, PathBuf};

/// `openssl` with `args` in `dir`, or a panic with what it said.
pub fn openssl(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// The CA of `dir` (ca.pem, ca.key), made on first use: (cert, key).
pub fn ca(dir: &Path) -> (PathBuf, PathBuf) {
    if !dir.join("ca.pem").exists() {
        let mut a = vec!["req", "-x509"];
        a.extend(EC);
        a.extend(["-days", "1", "-subj", "/CN=sockql test CA", "-keyout", "ca.key", "-out", "ca.pem"]);
        a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        openssl(dir, &a);
    }
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// `name`.pem and `name`.key in `dir`, signed by its CA for `ext`
/// (openssl extension lines, e.g. `subjectAltName=IP:10.0.0.1`): (cert, key).
pub fn signed(dir: &Path, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
    ca(dir);
    let (key, csr, pem, extfile) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&extfile), format!("basicConstraints=critical,CA:FALSE\n{ext}\n")).unwrap();
    let mut a = vec!["req"];
    a.extend(EC);
    a.extend(["-subj", subject, "-keyout", &key, "-out", &csr]);
    openssl(dir, &a);
    let sign = ["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
    openssl(dir, &[&sign[..], &["-days", "1", "-out", &pem, "-extfile", &extfile]].concat());
    (dir.join(pem), dir.join(key))
}
