//! `--history DIR` as hostile input: other hosts or users can place files
//! and links in the tree, and sockql reads it as root. Each test records
//! genuine samples for real (one listener in a fresh namespace, three
//! samples: three rows), plants the attack beside them, runs the binary
//! and asserts what did not happen: memory past a ceiling, a link
//! followed, a genuine row lost, a warning per file.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::common::*;
use crate::netns::Netns;

/// Resident memory a `--history` query may peak at here (debug build); a
/// plain query over the genuine files peaks near 60 MiB.
const CEILING_KIB: i64 = 200 << 10;

struct History {
    dir: PathBuf,
    /// The genuine files' host and date directory.
    host_dir: PathBuf,
    date_dir: PathBuf,
    /// One genuine file (its one row, to build attacks from).
    sample: PathBuf,
    _ns: Netns,
}

impl Drop for History {
    fn drop(&mut self) {
        // SOCKQL_KEEP_HISTORY=1 keeps the planted tree, to look at.
        if std::env::var_os("SOCKQL_KEEP_HISTORY").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Three genuine samples of `sockets` (one LISTEN socket each) under a
/// fresh directory.
fn genuine(tag: &str) -> History {
    let ns = Netns::new("hatk");
    let dir = std::env::temp_dir().join(format!("sockql-hatk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap().to_string();
    let _l = ns.enter(|| listener("127.0.0.1:7611", 8));
    for _ in 0..3 {
        let (_, err, ok) = ns.exec(bin(), &["record", "--samples", "1", "--out", &out, "--tables", "sockets"]);
        assert!(ok, "{err}");
        next_millisecond(); // distinct millisecond file names
    }
    let host_dir = std::fs::read_dir(dir.join("sockets")).unwrap().next().unwrap().unwrap().path();
    let date_dir = std::fs::read_dir(&host_dir).unwrap().next().unwrap().unwrap().path();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&date_dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    History { sample: files[0].clone(), dir, host_dir, date_dir, _ns: ns }
}

impl History {
    fn arg(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// A directory `sockets/<host>/<date of the genuine files>/`.
    fn plant_dir(&self, host: &str) -> PathBuf {
        let d = self.dir.join("sockets").join(host).join(self.date_dir.file_name().unwrap());
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The genuine sample's row, `n` times, with `state` replaced.
    fn rows_with_state(&self, n: usize, state: ArrayRef) -> RecordBatch {
        let f = std::fs::File::open(&self.sample).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap().next().unwrap().unwrap();
        let idx = UInt32Array::from(vec![0u32; n]);
        let schema = batch.schema();
        let (mut fields, mut cols) = (Vec::new(), Vec::new());
        for (f, c) in schema.fields().iter().zip(batch.columns()) {
            if f.name() == "state" {
                fields.push(f.as_ref().clone().with_data_type(state.data_type().clone()));
                cols.push(state.clone());
            } else {
                fields.push(f.as_ref().clone());
                cols.push(take(c.as_ref(), &idx, None).unwrap());
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }
}

fn write(path: &Path, batches: &[RecordBatch], props: WriterProperties) {
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn count_rows(h: &History, extra: &[&str], sql: &str) -> Measured {
    let mut args = vec![bin(), "--history", h.arg(), "--memory-limit", "64M", "--timeout", "10s", "--format", "ndjson"];
    args.extend_from_slice(extra);
    args.push(sql);
    peak_hwm(&args)
}

/// Run a command to the end; its peak memory is its VmHWM, read while it
/// runs. (Not wait4's ru_maxrss here: a child spawned with CLONE_VM
/// inherits the high-water mark of this test process, which built
/// hundreds of MB of attack files, until it execs.) `spawn` returns after
/// the exec, so every reading is the child's own; the last one is at most
/// a few ms before it exits.
fn peak_hwm(args: &[&str]) -> Measured {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        so.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        se.read_to_string(&mut s).unwrap();
        s
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        }) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    Measured { peak_kib: peak, out: out.join().unwrap(), err: err.join().unwrap(), ok: status.success() }
}

fn warnings(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains("history: ")).collect()
}

/// A file of three rows whose `state` is 128 MiB of one letter each
/// (zstd: a few hundred KB on disk), and one of 30,000 one-row row groups
/// (a footer of several MB). Neither may cost more than the ceiling: the
/// first is refused from its page headers, the second from its footer's
/// length, before anything is decoded; the genuine rows all count.
#[test]
fn decompression_bombs_and_huge_footers_stay_within_the_memory_limit() {
    let h = genuine("bomb");
    let big = 128 << 20;
    let values: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(big)).collect();
    let state: ArrayRef = Arc::new(StringArray::from(values));
    let bomb = h.rows_with_state(3, state);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let bomb_path = h.plant_dir("host=evil").join("1.parquet");
    write(&bomb_path, &[bomb], props);
    let on_disk = std::fs::metadata(&bomb_path).unwrap().len();
    assert!(on_disk < 4 << 20, "the bomb is {on_disk} bytes on disk");

    // 30,000 row groups (the writer's limit is 32,767), three columns each.
    let n = 30_000;
    let schema = Arc::new(Schema::new(["state", "x", "y"].map(|c| Field::new(c, DataType::Utf8, true)).to_vec()));
    // One batch per row: the writer splits a larger batch by recursing.
    let rows: Vec<RecordBatch> = (0..n)
        .map(|i| {
            let col: ArrayRef = Arc::new(StringArray::from(vec![format!("S{i}")]));
            RecordBatch::try_new(schema.clone(), vec![col.clone(), col.clone(), col]).unwrap()
        })
        .collect();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1))
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let groups_path = h.plant_dir("host=evil2").join("1.parquet");
    write(&groups_path, &rows, props);
    let footer_len = {
        let bytes = std::fs::read(&groups_path).unwrap();
        let tail = &bytes[bytes.len() - 8..];
        u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]])
    };
    assert!(footer_len > 2 << 20, "the footer is {footer_len} bytes");

    drop(rows);
    let m = count_rows(
        &h,
        &[],
        "SELECT host, count(*) AS n, sum(length(state)) AS chars FROM history.sockets GROUP BY host",
    );
    eprintln!("query: peak RSS {} KiB", m.peak_kib);
    assert!(m.ok, "{}", m.err);
    assert!(m.peak_kib < CEILING_KIB, "peak RSS {} KiB (ceiling {CEILING_KIB})\n{}", m.peak_kib, m.err);
    let rows = parse_ndjson(&m.out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(field(&rows[0], "n"), 3);
    assert_eq!(field(&rows[0], "chars").as_u64(), Some(3 * "LISTEN".len() as u64));
    let w = warnings(&m.err);
    assert_eq!(w.len(), 2, "{}", m.err);
    assert!(
        w.iter().any(|l| l.contains(bomb_path.to_str().unwrap()) && l.contains("decompresses to 128.0 MiB")),
        "{}",
        m.err
    );
    assert!(w.iter().any(|l| l.contains(groups_path.to_str().unwrap()) && l.contains("footer claims")), "{}", m.err);

    // The saved report of the brief, too.
    let m = peak_hwm(&[
        bin(),
        "--history",
        h.arg(),
        "--memory-limit",
        "64M",
        "--timeout",
        "10s",
        "--format",
        "ndjson",
        "run",
        "state_trend",
    ]);
    eprintln!("state_trend: peak RSS {} KiB", m.peak_kib);
    assert!(m.ok, "{}", m.err);
    assert!(m.peak_kib < CEILING_KIB, "peak RSS {} KiB\n{}", m.peak_kib, m.err);
    assert!(!m.out.contains("aaaa") && m.out.contains("LISTEN"), "{}", m.out);
}

/// Links inside the tree: a host directory linked to a root-only
/// directory, a file linked to a root-only file, a host directory linked
/// to `/` (a loop). None is followed: their rows never appear, the query
/// succeeds with the genuine rows, one warning names each link.
#[test]
fn links_inside_the_history_are_never_followed() {
    let h = genuine("links");
    let secret = std::env::temp_dir().join(format!("sockql-hatk-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&secret);
    let secret_date = secret.join(h.date_dir.file_name().unwrap());
    std::fs::create_dir_all(&secret_date).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret_rows = h.rows_with_state(2, Arc::new(StringArray::from(vec!["SECRET-ROW", "SECRET-ROW"])));
    write(&secret_date.join("s.parquet"), std::slice::from_ref(&secret_rows), WriterProperties::builder().build());
    let secret_file = secret.join("file.parquet");
    write(&secret_file, &[secret_rows], WriterProperties::builder().build());

    let host3 = h.dir.join("sockets/host=evil3");
    symlink(&secret, &host3).unwrap();
    let host2 = h.dir.join("sockets/host=evil2");
    symlink("/", &host2).unwrap();
    let file_link = h.date_dir.join("x.parquet");
    symlink(&secret_file, &file_link).unwrap();
    let date_link = h.host_dir.join("date=2020-01-01");
    symlink(&secret, &date_link).unwrap();

    let m = count_rows(&h, &[], "SELECT host, state, count(*) AS n FROM history.sockets GROUP BY host, state");
    let _ = std::fs::remove_dir_all(&secret);
    assert!(m.ok, "{}", m.err);
    assert!(!m.out.contains("SECRET") && !m.out.contains("evil"), "{}", m.out);
    let rows = parse_ndjson(&m.out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(field(&rows[0], "state").as_str(), Some("LISTEN"));
    assert_eq!(field(&rows[0], "n"), 3);
    let w = warnings(&m.err);
    assert_eq!(w.len(), 4, "{}", m.err);
    for link in [&host3, &host2, &file_link, &date_link] {
        let named: Vec<_> = w.iter().filter(|l| l.contains(&format!("{}:", link.display()))).collect();
        assert_eq!(named.len(), 1, "{link:?}: {}", m.err);
        assert!(named[0].contains("symbolic link"), "{}", named[0]);
    }
    assert!(!m.err.contains("SECRET"), "{}", m.err);
}

/// Plant a file whose `state` is Int64 under host=aaa (sorting before the
/// genuine host) and one whose `state` holds invalid UTF-8 under host=bbb.
fn plant_wrong_and_bad(h: &History) -> (PathBuf, PathBuf) {
    let wrong = h.rows_with_state(1, Arc::new(Int64Array::from(vec![7])));
    let wrong_path = h.plant_dir("host=aaa").join("0.parquet");
    write(&wrong_path, &[wrong], WriterProperties::builder().build());

    // "BADUTF8MARK" written plain (no compression, dictionary or
    // statistics), then two of its bytes turned into 0xff 0xfe.
    let marked = h.rows_with_state(1, Arc::new(StringArray::from(vec!["BADUTF8MARK"])));
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let bad_path = h.plant_dir("host=bbb").join("0.parquet");
    write(&bad_path, &[marked], props);
    let mut bytes = std::fs::read(&bad_path).unwrap();
    let at: Vec<usize> = bytes.windows(11).enumerate().filter(|(_, w)| *w == b"BADUTF8MARK").map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "the marker is in the file once");
    bytes[at[0] + 3] = 0xff;
    bytes[at[0] + 4] = 0xfe;
    std::fs::write(&bad_path, bytes).unwrap();

    (wrong_path, bad_path)
}

/// A file with the right names but `state` as Int64 that sorts before the
/// genuine ones (host=aaa), and a file whose `state` holds invalid UTF-8:
/// both left out with one warning each, and every genuine row counted by
/// queries that read `state`.
#[test]
fn files_with_wrong_types_or_invalid_utf8_are_left_out_alone() {
    let h = genuine("types");
    let (wrong_path, bad_path) = plant_wrong_and_bad(&h);
    let m = count_rows(
        &h,
        &[],
        "SELECT count(*) AS n, count(state) AS states, count(DISTINCT host) AS hosts FROM history.sockets",
    );
    assert!(m.ok, "{}", m.err);
    let rows = parse_ndjson(&m.out);
    assert_eq!(field(&rows[0], "n"), 3, "{}", m.err);
    assert_eq!(field(&rows[0], "states"), 3);
    assert_eq!(field(&rows[0], "hosts"), 1);
    let w = warnings(&m.err);
    assert_eq!(w.len(), 2, "{}", m.err);
    assert!(
        w.iter().any(|l| l.contains(wrong_path.to_str().unwrap()) && l.contains("column 'state' is Int64")),
        "{}",
        m.err
    );
    assert!(w.iter().any(|l| l.contains(bad_path.to_str().unwrap()) && l.contains("cannot be decoded")), "{}", m.err);
    let m = count_rows(&h, &[], "SELECT state, count(*) AS n FROM history.sockets GROUP BY state");
    assert!(m.ok, "{}", m.err);
    assert_eq!(parse_ndjson(&m.out), vec![serde_json::json!({"state": "LISTEN", "n": 3})]);
}

/// Ten thousand files that are not Parquet cost six warning lines: five
/// named, one counting the rest.
#[test]
fn many_bad_files_are_summarised() {
    let h = genuine("many");
    let d = h.plant_dir("host=junk");
    for i in 0..10_000 {
        std::fs::write(d.join(format!("{i:05}.parquet")), b"not parquet at all").unwrap();
    }
    let m = count_rows(&h, &[], "SELECT count(*) AS n FROM history.sockets");
    assert!(m.ok, "{}", m.err);
    assert_eq!(field(&parse_ndjson(&m.out)[0], "n"), 3);
    let w = warnings(&m.err);
    assert_eq!(w.len(), 6, "{}", m.err);
    assert_eq!(w.iter().filter(|l| l.contains("leaving out") && l.contains("host=junk")).count(), 5, "{}", m.err);
    assert!(w[5].ends_with("history: … and 9995 more files left out"), "{}", w[5]);
}

/// The same checks on an S3 history (moto's server on loopback): the
/// genuine samples, the wrong-typed file and the invalid UTF-8 file
/// uploaded under the same layout; the bad two are left out by name.
#[test]
fn s3_history_gets_the_same_checks() {
    let h = genuine("s3");
    let (wrong_path, bad_path) = plant_wrong_and_bad(&h);
    let s3 = crate::history::S3::start();
    let bucket = format!("sockql-hatk-{}", std::process::id());
    let script = format!(
        "import os, boto3\n\
         s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n\
         s3.create_bucket(Bucket='{bucket}')\n\
         root = '{root}'\n\
         n = 0\n\
         for d, _, files in os.walk(root):\n\
         \x20   for f in files:\n\
         \x20       p = os.path.join(d, f)\n\
         \x20       s3.upload_file(p, '{bucket}', 'fleet/' + os.path.relpath(p, root))\n\
         \x20       n += 1\n\
         print(n)\n",
        port = s3.port,
        root = h.arg(),
    );
    let o = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "boto3: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "8", "3 sockets, 3 samples, 2 planted");
    let url = format!("s3://{bucket}/fleet");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["--history", &url, "--memory-limit", "64M", "--timeout", "10s", "--format", "ndjson"])
        .arg("SELECT count(*) AS n, count(state) AS states, count(DISTINCT host) AS hosts FROM history.sockets");
    s3.env(&mut cmd);
    let (out, err, ok) = output_of(cmd.output().unwrap());
    assert!(ok, "{err}");
    assert_eq!(parse_ndjson(&out), vec![serde_json::json!({"n": 3, "states": 3, "hosts": 1})], "{err}");
    let w = warnings(&err);
    assert_eq!(w.len(), 2, "{err}");
    let key = |p: &Path| format!("{url}/{}", p.strip_prefix(&h.dir).unwrap().display());
    assert!(w.iter().any(|l| l.contains(&key(&wrong_path)) && l.contains("column 'state' is Int64")), "{err}");
    assert!(w.iter().any(|l| l.contains(&key(&bad_path)) && l.contains("cannot be decoded")), "{err}");
}

/// A host directory that its owner (user nobody, who owns `sockets/`)
/// swaps for a link to a root-only directory and back, as fast as it
/// can, while queries read the tree. Listing by path (read_dir after an
/// lstat) followed the link whenever the swap fell between the two: the
/// secret directory's file names were listed and named in warnings (its
/// rows never, as files are opened by descriptor and their identity
/// checked). Now each directory is opened from its parent's descriptor
/// with O_NOFOLLOW and listed through its own: neither rows nor names of
/// the secret directory appear, and the genuine rows all count.
#[test]
fn a_directory_swapped_for_a_link_mid_walk_is_never_listed() {
    require_root();
    let h = genuine("swap");
    let date = h.date_dir.file_name().unwrap().to_owned();
    let secret = std::env::temp_dir().join(format!("sockql-hatk-swapsecret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&secret);
    std::fs::create_dir_all(secret.join(&date)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret_rows = h.rows_with_state(2, Arc::new(StringArray::from(vec!["SECRET-ROW", "SECRET-ROW"])));
    for i in 0..4 {
        write(
            &secret.join(&date).join(format!("SECRETNAME{i}.parquet")),
            std::slice::from_ref(&secret_rows),
            WriterProperties::builder().build(),
        );
    }
    // nobody owns the table directory and eight host directories in it.
    let sockets = h.dir.join("sockets");
    // `record` made the tree root's own (0700): nobody may reach it.
    std::fs::set_permissions(&h.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hosts = 8;
    for i in 0..hosts {
        h.plant_dir(&format!("host=swap{i}"));
    }
    for entry in walkdir_of(&sockets) {
        if entry != h.host_dir && !entry.starts_with(&h.host_dir) {
            std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
        }
    }
    let swap = format!(
        "import os,time\nend=time.time()+60\nwhile time.time()<end:\n  for i in range({hosts}):\n    real='{base}/host=swap'+str(i); hold='{base}/.hold'+str(i)\n    try:\n      os.rename(real,hold); os.symlink('{secret}',real); time.sleep(0.0003); os.unlink(real); os.rename(hold,real); time.sleep(0.0003)\n    except OSError:\n      pass\n",
        base = sockets.display(),
        secret = secret.display()
    );
    let mut swapper = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &swap])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut links_seen, mut runs) = (0, 0);
    let started = std::time::Instant::now();
    while runs < 12 && started.elapsed() < std::time::Duration::from_secs(30) {
        let m = count_rows(&h, &[], "SELECT state, count(*) AS n FROM history.sockets GROUP BY state");
        runs += 1;
        assert!(m.ok, "{}", m.err);
        assert!(!m.out.contains("SECRET"), "a row of the root-only directory was read: {}", m.out);
        assert!(!m.err.contains("SECRETNAME"), "the root-only directory was listed: {}", m.err);
        assert_eq!(parse_ndjson(&m.out), vec![serde_json::json!({"state": "LISTEN", "n": 3})], "{}", m.err);
        links_seen +=
            warnings(&m.err).iter().filter(|l| l.contains("host=swap") && l.contains("symbolic link")).count();
    }
    let _ = swapper.kill();
    let _ = swapper.wait();
    let _ = std::fs::remove_dir_all(&secret);
    eprintln!("{runs} queries; {links_seen} warnings named a host=swap link");
    // The swap was live while the tree was read.
    assert!(links_seen > 0, "no query saw a link: the attack did not run");
}

/// Every directory and file below `dir`, `dir` included (no link followed).
fn walkdir_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        i += 1;
        if std::fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            out.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// A dictionary-expansion bomb: one 4 MiB string in the dictionary of
/// `state`, referenced by 250,000 rows (a file of ~300 KB that decodes to
/// ~1 TB, written with pyarrow). Each page and the dictionary page are
/// small, so only the rows' values betray it: the query scanned the 1 TB
/// until --timeout. Now the check counts each row's value length while it
/// decodes (as views, at no cost), refuses the file with one warning, and
/// the genuine rows answer at once, within the memory ceiling.
#[test]
fn a_dictionary_repeating_one_huge_value_is_left_out() {
    let h = genuine("dict");
    let path = h.plant_dir("host=evil").join("1.parquet");
    let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
         src, dst, rows = sys.argv[1], sys.argv[2], 250000\n\
         t = pq.read_table(src)\n\
         zeros = pa.array([0] * rows, type=pa.int32())\n\
         cols = [pa.DictionaryArray.from_arrays(zeros, pa.array(['x' * (4 << 20)])) if n == 'state' else t.column(n).combine_chunks().take(zeros) for n in t.column_names]\n\
         fields = [pa.field(f.name, c.type, f.nullable) for f, c in zip(t.schema, cols)]\n\
         out = pa.Table.from_arrays(cols, schema=pa.schema(fields))\n\
         pq.write_table(out, dst, use_dictionary=['state'], dictionary_pagesize_limit=8 << 20, compression='zstd', write_statistics=False, row_group_size=rows)\n";
    let o = std::process::Command::new("python3")
        .args(["-c", script, h.sample.to_str().unwrap(), path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "pyarrow: {}", String::from_utf8_lossy(&o.stderr));
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk < 1 << 20, "the bomb is {on_disk} bytes on disk");

    let started = std::time::Instant::now();
    let m = count_rows(
        &h,
        &[],
        "SELECT host, count(*) AS n, max(length(state)) AS longest FROM history.sockets GROUP BY host",
    );
    eprintln!("query: peak RSS {} KiB in {:?}", m.peak_kib, started.elapsed());
    assert!(m.ok, "{}", m.err);
    assert!(m.peak_kib < CEILING_KIB, "peak RSS {} KiB (ceiling {CEILING_KIB})\n{}", m.peak_kib, m.err);
    assert_eq!(
        parse_ndjson(&m.out),
        vec![
            serde_json::json!({"host": h.host_dir.file_name().unwrap().to_str().unwrap().trim_start_matches("host="), "n": 3, "longest": "LISTEN".len()})
        ],
        "{}",
        m.err
    );
    let w = warnings(&m.err);
    assert_eq!(w.len(), 1, "{}", m.err);
    assert!(w[0].contains(path.to_str().unwrap()) && w[0].contains("of strings"), "{}", m.err);

    let m = peak_hwm(&[
        bin(),
        "--history",
        h.arg(),
        "--memory-limit",
        "64M",
        "--timeout",
        "10s",
        "--format",
        "ndjson",
        "run",
        "state_trend",
    ]);
    eprintln!("state_trend: peak RSS {} KiB", m.peak_kib);
    assert!(m.ok, "{}", m.err);
    assert!(m.peak_kib < CEILING_KIB, "peak RSS {} KiB\n{}", m.peak_kib, m.err);
    assert!(!m.out.contains("xxxx") && m.out.contains("LISTEN"), "{}", m.out);
}
