use super::*;
use std::io::{Cursor, Write};

fn make(files: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(body.as_bytes()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn run(files: &[(&str, &str)], module: &str, version: &str) -> Result<Option<Vec<u8>>, BadZip> {
    let module = ModulePath::new(module).unwrap();
    let version = Version::parse(version).unwrap();
    check(Cursor::new(make(files)), &module, &version)
}

#[test]
fn accepts_a_module_zip() {
    let go_mod = "module example.com/Big/m // comment\n\ngo 1.19\n";
    let files = [("example.com/Big/m@v1.0.0/go.mod", go_mod), ("example.com/Big/m@v1.0.0/m.go", "package m\n")];
    assert_eq!(run(&files, "example.com/Big/m", "v1.0.0").unwrap().unwrap(), go_mod.as_bytes());
    let no_mod = [("example.com/m@v2.0.0+incompatible/m.go", "package m\n")];
    assert_eq!(run(&no_mod, "example.com/m", "v2.0.0+incompatible").unwrap(), None);
}

#[test]
fn rejects_what_the_rules_forbid() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("other@v1.0.0/m.go", "")], "is not under"),
        (&[("example.com/m@v1.0.1/m.go", "")], "is not under"),
        (&[("example.com/m@v1.0.0/a.go", ""), ("example.com/m@v1.0.0/A.go", "")], "letter case"),
        (&[("example.com/m@v1.0.0/A/x.go", ""), ("example.com/m@v1.0.0/a/y.go", "")], "letter case"),
        (&[("example.com/m@v1.0.0/a", ""), ("example.com/m@v1.0.0/a/y.go", "")], "both a file and a directory"),
        (&[("example.com/m@v1.0.0/a/y.go", ""), ("example.com/m@v1.0.0/a", "")], "both a file and a directory"),
        (&[("example.com/m@v1.0.0/../x.go", "")], "clean"),
        (&[("example.com/m@v1.0.0/a//x.go", "")], "clean"),
        (&[("example.com/m@v1.0.0/a:b.go", "")], "not allowed"),
        (&[("example.com/m@v1.0.0/sub/go.mod", "module example.com/m/sub\n")], "module root"),
        (&[("example.com/m@v1.0.0/GO.MOD", "module example.com/m\n")], "lowercase"),
        (&[("example.com/m@v1.0.0/go.mod", "module example.com/other\n")], "declares module"),
        (&[("example.com/m@v1.0.0/go.mod", "go 1.19\n")], "no module line"),
    ];
    for (files, why) in cases {
        let err = run(files, "example.com/m", "v1.0.0").unwrap_err();
        assert!(err.0.contains(why), "{files:?}: {err}");
    }
    let incompatible = [("example.com/m@v2.0.0+incompatible/go.mod", "module example.com/m\n")];
    assert!(run(&incompatible, "example.com/m", "v2.0.0+incompatible").unwrap_err().0.contains("+incompatible"));
    let module = ModulePath::new("example.com/m").unwrap();
    let version = Version::parse("v1.0.0").unwrap();
    assert!(check(Cursor::new(b"not a zip".to_vec()), &module, &version).unwrap_err().0.contains("not a zip"));
}

#[test]
fn module_lines() {
    assert_eq!(module_line("// c\nmodule \"example.com/q\"\n").as_deref(), Some("example.com/q"));
    assert_eq!(module_line("modulex a\n"), None);
    assert_eq!(module_line("\tmodule\texample.com/t\n").as_deref(), Some("example.com/t"));
}

#[test]
fn file_paths_follow_check_file_path() {
    for ok in
        ["a.go", "sub/x_test.go", "with space.txt", "a-b+c@d~e/{x}[y].go", "héllo.go", ".github/x.yml", "CONFIG.go"]
    {
        assert!(check_file_path(ok).is_ok(), "{ok}");
    }
    let cases = [
        ("a./x.go", "ends with a dot"),
        ("x.", "ends with a dot"),
        ("...", "clean"),
        ("/a.go", "clean"),
        ("a/", "clean"),
        ("aux.go", "reserved"),
        ("CON", "reserved"),
        ("sub/Com1.txt", "reserved"),
        ("lpt9.tar.gz", "reserved"),
        ("nul", "reserved"),
        ("a\\b.go", "not allowed"),
        ("a;b.go", "not allowed"),
        ("a\u{1}.go", "not allowed"),
        ("a\u{2022}.go", "not allowed"),
        ("\u{2167}.go", "not allowed"),
    ];
    for (bad, why) in cases {
        let err = check_file_path(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let dirs =
        [("example.com/m@v1.0.0/a/", ""), ("example.com/m@v1.0.0/a/x.go", ""), ("example.com/m@v1.0.0/a/y.go", "")];
    assert!(run(&dirs, "example.com/m", "v1.0.0").is_ok(), "a directory entry and files under it");
    let err = run(&[("example.com/m@v1.0.0/aux.go", "")], "example.com/m", "v1.0.0").unwrap_err();
    assert!(err.0.contains("reserved"), "{err}");
}

/// Overwrite the 4-byte little-endian field at `offset` from every header with `signature`.
fn patch(zip: &mut [u8], signature: u32, offset: usize, value: u32) {
    let sig = signature.to_le_bytes();
    let starts: Vec<usize> = (0..zip.len() - 4).filter(|&i| zip[i..i + 4] == sig).collect();
    for start in starts {
        zip[start + offset..start + offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;

fn check_bytes(zip: Vec<u8>) -> Result<Option<Vec<u8>>, BadZip> {
    check(Cursor::new(zip), &ModulePath::new("example.com/m").unwrap(), &Version::parse("v1.0.0").unwrap())
}

#[test]
fn entries_are_inflated_and_verified() {
    // Duplicate names: written as a.go and b.go, then renamed.
    let zip = make(&[("example.com/m@v1.0.0/a.go", "x"), ("example.com/m@v1.0.0/b.go", "y")]);
    let mut duplicate = zip.clone();
    let (a, b) = (b"example.com/m@v1.0.0/a.go", b"example.com/m@v1.0.0/b.go");
    for i in 0..duplicate.len() - b.len() {
        if &duplicate[i..i + b.len()] == b {
            duplicate[i..i + a.len()].copy_from_slice(a);
        }
    }
    assert!(check_bytes(duplicate).unwrap_err().0.contains("same name"));

    // A wrong CRC.
    let mut zip = make(&[("example.com/m@v1.0.0/a.go", "package m\n")]);
    patch(&mut zip, LOCAL, 14, 0xdead_beef);
    patch(&mut zip, CENTRAL, 16, 0xdead_beef);
    assert!(check_bytes(zip).unwrap_err().0.contains("corrupt"));

    // Headers that understate or overstate the inflated size (a lying header cannot slip a
    // large file past the total limit, which is checked against the declared sizes first).
    let big = "0".repeat(1 << 20);
    for (declared, why) in [(10u32, "corrupt"), (2 << 20, "inflates to")] {
        let mut zip = make(&[("example.com/m@v1.0.0/big.txt", &big)]);
        patch(&mut zip, LOCAL, 22, declared);
        patch(&mut zip, CENTRAL, 24, declared);
        let err = check_bytes(zip).unwrap_err();
        assert!(err.0.contains(why), "{declared}: {err}");
    }

    // A name that is not UTF-8.
    let mut zip = make(&[("example.com/m@v1.0.0/a.go", "x")]);
    for i in 0..zip.len() - a.len() {
        if &zip[i..i + a.len()] == a {
            zip[i + a.len() - 4] = 0xff;
        }
    }
    let err = check_bytes(zip).unwrap_err();
    assert!(err.0.contains("not valid UTF-8"), "{err}");
}

#[test]
fn module_directive_forms() {
    let cases = [
        ("module (\n\texample.com/x\n)\n", Some("example.com/x")),
        ("module (\n\n  // the path\n  \"example.com/q\" // quoted\n)\ngo 1.19\n", Some("example.com/q")),
        ("module(\nexample.com/y\n)\n", Some("example.com/y")),
        ("module `example.com/raw`\n", Some("example.com/raw")),
        ("// module example.com/no\nmodule example.com/yes // c\n", Some("example.com/yes")),
        ("module (\n)\n", None),
        ("module \"a b\"\n", None),
    ];
    for (text, want) in cases {
        assert_eq!(module_line(text).as_deref(), want, "{text:?}");
    }
    let module = ModulePath::new("example.com/x").unwrap();
    let version = Version::parse("v1.0.0").unwrap();
    assert!(check_go_mod(b"module (\n\texample.com/x\n)\n", &module, &version).is_ok());
}
