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
        (&[("example.com/m@v1.0.0/a.go", ""), ("example.com/m@v1.0.0/A.go", "")], "collides"),
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
