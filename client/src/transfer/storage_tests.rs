use super::*;
use parley_proto::transfer::CHUNK_SIZE;
use parley_proto::Identity;

fn manifest(name: &str, data: &[u8]) -> Manifest {
    Manifest::for_bytes(&Identity::from_seed(&[1; 32]), name, data).expect("manifest")
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn chunk<'a>(m: &Manifest, d: &'a [u8], i: u32) -> &'a [u8] {
    &d[m.chunk_offset(i) as usize..][..m.chunk_len(i)]
}

#[test]
fn chunks_in_any_order_make_the_file_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = data(2 * CHUNK_SIZE as usize + 100);
    let m = manifest("report.pdf", &d);
    let (pf, have) = PartialFile::open(dir.path(), &m).expect("open");
    assert_eq!(have.count(), 0);
    assert_eq!(pf.part_path(), dir.path().join("report.pdf.part"));
    for i in [2, 0, 1] {
        pf.write_chunk(i, chunk(&m, &d, i)).expect("write");
    }
    assert_eq!(pf.read_chunk(2).expect("read"), chunk(&m, &d, 2));
    pf.save_resume(&Bitfield::full(3)).expect("resume");
    let path = pf.finish().expect("finish");
    assert_eq!(path, dir.path().join("report.pdf"));
    assert_eq!(std::fs::read(&path).expect("read"), d);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(left.len(), 1, "only the file remains: {left:?}");
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    for existing in ["a.tar.gz", "a (1).tar.gz"] {
        std::fs::write(dir.path().join(existing), b"mine").expect("write");
    }
    let d = data(10);
    let m = manifest("a.tar.gz", &d);
    let (pf, _) = PartialFile::open(dir.path(), &m).expect("open");
    pf.write_chunk(0, &d).expect("write");
    assert_eq!(
        pf.finish().expect("finish"),
        dir.path().join("a (2).tar.gz")
    );
    for existing in ["a.tar.gz", "a (1).tar.gz"] {
        assert_eq!(
            std::fs::read(dir.path().join(existing)).expect("read"),
            b"mine"
        );
    }
    assert_eq!(candidate_name(".profile", 3), ".profile (3)");
    assert_eq!(candidate_name("noext", 1), "noext (1)");
}

#[test]
fn a_restart_keeps_only_chunks_that_still_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = data(4 * CHUNK_SIZE as usize);
    let m = manifest("big.bin", &d);
    {
        let (pf, _) = PartialFile::open(dir.path(), &m).expect("open");
        let mut have = Bitfield::empty(4);
        for i in [0, 1, 3] {
            pf.write_chunk(i, chunk(&m, &d, i)).expect("write");
            have.set(i);
        }
        pf.save_resume(&have).expect("resume");
    }
    // Chunk 1 damaged on disk while the client was down.
    let mut bad = chunk(&m, &d, 1).to_vec();
    bad[9] ^= 1;
    let (pf, _) = PartialFile::open(dir.path(), &m).expect("reopen");
    pf.write_chunk(1, &bad).expect("damage");
    drop(pf);
    let (_, have) = PartialFile::open(dir.path(), &m).expect("reopen");
    assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![0, 3]);
    // Without the resume file every chunk is hashed: the same answer.
    std::fs::remove_file(dir.path().join(".big.bin.parley-resume")).expect("rm");
    let (_, have) = PartialFile::open(dir.path(), &m).expect("reopen");
    assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![0, 3]);
}

#[test]
fn another_transfer_of_the_same_name_is_not_clobbered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = manifest("same.txt", b"first");
    let second = manifest("same.txt", b"second");
    let (pf, _) = PartialFile::open(dir.path(), &first).expect("open");
    pf.save_resume(&Bitfield::empty(1)).expect("resume");
    assert!(matches!(
        PartialFile::open(dir.path(), &second),
        Err(StorageError::Busy(_))
    ));
}

#[test]
fn a_planted_symlink_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    std::os::unix::fs::symlink(&victim, dir.path().join("x.part")).expect("symlink");
    let m = manifest("x", b"payload");
    assert!(matches!(
        PartialFile::open(dir.path(), &m),
        Err(StorageError::NotAFile(_))
    ));
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    // A directory in the way is refused too.
    std::fs::create_dir(dir.path().join("y.part")).expect("mkdir");
    assert!(PartialFile::open(dir.path(), &manifest("y", b"p")).is_err());
}

#[test]
fn hostile_names_never_become_paths() {
    let dir = Path::new("/srv/inbox");
    for name in [
        "../etc/passwd",
        "/etc/passwd",
        "..",
        "a/b",
        "NUL",
        "x\0y",
        "",
    ] {
        assert!(
            matches!(inside(dir, name), Err(StorageError::Name { .. })),
            "{name:?}"
        );
    }
    // Derived names are checked too: the part file of a 251-byte name is too long.
    let long = "n".repeat(251);
    let m = manifest(&long, b"x");
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        PartialFile::open(tmp.path(), &m),
        Err(StorageError::Name { .. })
    ));
}

#[test]
fn when_every_name_is_taken_the_file_stays_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    for n in 0..=MAX_SUFFIX {
        std::fs::write(dir.path().join(candidate_name("t.txt", n)), b"").expect("write");
    }
    let m = manifest("t.txt", b"new");
    let (pf, _) = PartialFile::open(dir.path(), &m).expect("open");
    pf.write_chunk(0, b"new").expect("write");
    assert!(matches!(pf.finish(), Err(StorageError::NoFreeName(_))));
    assert_eq!(
        std::fs::read(dir.path().join("t.txt.part")).expect("kept"),
        b"new"
    );
}
