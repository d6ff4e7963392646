use super::*;

#[test]
fn escaping_round_trips() {
    let path = ModulePath::from_escaped("example.com/!big!corp/!lib").unwrap();
    assert_eq!(path.as_str(), "example.com/BigCorp/Lib");
    assert_eq!(path.escaped(), "example.com/!big!corp/!lib");
    assert_eq!(unescape("a!"), None, "dangling !");
    assert_eq!(unescape("a!1"), None, "! before a digit");
    assert_eq!(unescape("example.com/Big"), None, "capitals must be escaped");
}

#[test]
fn module_paths() {
    for good in ["example.com/m", "example.com/m/v2", "gopkg.in/yaml.v2", "gopkg.in/check.v1", "a.b/c_d~e-f.g"] {
        assert!(ModulePath::new(good).is_ok(), "{good}");
    }
    for bad in ["", "example", "Example.com/m", "-x.com/m", "example.com//m", "example.com/m/", "example.com/.m"] {
        assert!(ModulePath::new(bad).is_err(), "{bad:?}");
    }
    for bad in ["example.com/m/v1", "example.com/m/v0", "example.com/a b", "example.com/a@v1", "x.com/m/../n"] {
        assert!(ModulePath::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(ModulePath::new("example.com/m/v3").unwrap().major_suffix(), "/v3");
    assert_eq!(ModulePath::new("example.com/m/v03").unwrap().major_suffix(), "");
    assert_eq!(ModulePath::new("gopkg.in/yaml.v2").unwrap().major_suffix(), ".v2");
    assert_eq!(ModulePath::new("example.com/m").unwrap().major_suffix(), "");
}

#[test]
fn versions() {
    for good in ["v1.0.0", "v0.1.2-pre.1", "v2.0.0+incompatible", "v0.0.0-20190102150405-abcdef123456"] {
        assert!(Version::parse(good).is_some(), "{good}");
    }
    for bad in ["1.0.0", "v1.0", "v1", "v01.0.0", "v1.0.0+build", "master", "v1.0.0-01", ""] {
        assert!(Version::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn pseudo_versions() {
    let time = |v: &str| Version::parse(v).unwrap().pseudo_time();
    assert_eq!(time("v0.0.0-20190102150405-abcdef123456").as_deref(), Some("2019-01-02T15:04:05Z"));
    assert!(time("v1.2.4-0.20190102150405-abcdef123456").is_some());
    assert!(time("v1.2.3-pre.0.20190102150405-abcdef123456").is_some());
    assert!(time("v1.2.3-pre").is_none());
    assert!(time("v1.2.0-20190102150405-abcdef123456").is_none(), "form 1 needs a vX.0.0 base");
    assert!(time("v1.0.0-beta.1").is_none());
}

#[test]
fn major_suffix_rules() {
    let ok = |v: &str, s: &str| Version::parse(v).unwrap().matches_major(s);
    assert!(ok("v1.2.3", ""));
    assert!(ok("v0.1.0", ""));
    assert!(!ok("v2.0.0", ""));
    assert!(ok("v2.0.0+incompatible", ""));
    assert!(!ok("v1.0.0+incompatible", ""));
    assert!(ok("v2.1.0", "/v2"));
    assert!(!ok("v3.0.0", "/v2"));
    assert!(!ok("v2.0.0+incompatible", "/v2"));
    assert!(ok("v2.4.0", ".v2"));
    assert!(ok("v0.0.0-20190102150405-abcdef123456", ".v1"));
}

#[test]
fn ordering_and_latest() {
    let vs: Vec<Version> = ["v1.10.0", "v1.2.0", "v1.9.0-rc.1", "v0.0.0-20200101000000-aaaaaaaaaaaa", "v1.2.0-alpha"]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect();
    assert_eq!(latest(&vs).unwrap().as_str(), "v1.10.0");
    assert_eq!(list_body(&vs), "v1.2.0-alpha\nv1.2.0\nv1.9.0-rc.1\nv1.10.0\n");
    let pre: Vec<Version> = ["v1.0.0-beta.2", "v1.0.0-beta.10", "v0.0.0-20200101000000-aaaaaaaaaaaa"]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect();
    assert_eq!(latest(&pre).unwrap().as_str(), "v1.0.0-beta.10");
    let pseudo: Vec<Version> = ["v0.0.0-20200101000000-aaaaaaaaaaaa", "v0.0.0-20210101000000-bbbbbbbbbbbb"]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect();
    assert_eq!(latest(&pseudo).unwrap().as_str(), "v0.0.0-20210101000000-bbbbbbbbbbbb");
    assert_eq!(list_body(&pseudo), "");
    assert!(latest(&[]).is_none());
}

#[test]
fn pseudo_versions_need_a_real_time() {
    for bad in [
        "v0.0.0-20191301000000-abcdef123456",
        "v0.0.0-20190230000000-abcdef123456",
        "v0.0.0-20190102250405-abcdef123456",
        "v1.2.4-0.20190102156005-abcdef123456",
        "v1.2.3-pre.0.20190100150405-abcdef123456",
    ] {
        assert!(Version::parse(bad).is_none(), "{bad}");
    }
    assert!(Version::parse("v0.0.0-20200229235959-abcdef123456").is_some(), "leap day");
    assert!(Version::parse("v0.0.0-21000229000000-abcdef123456").is_none(), "2100 is no leap year");
}

#[test]
fn latest_pseudo_version_is_the_newest_commit() {
    // v0.0.0-2021… sorts below v1.2.4-0.2020… by semver, but its commit is newer.
    let vs: Vec<Version> = ["v1.2.4-0.20200101000000-aaaaaaaaaaaa", "v0.0.0-20210101000000-bbbbbbbbbbbb"]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect();
    assert_eq!(latest(&vs).unwrap().as_str(), "v0.0.0-20210101000000-bbbbbbbbbbbb");
    let with_pre: Vec<Version> = vs.iter().cloned().chain(Version::parse("v0.1.0-rc.1")).collect();
    assert_eq!(latest(&with_pre).unwrap().as_str(), "v0.1.0-rc.1", "a pre-release beats pseudo-versions");
}

#[test]
fn rfc3339_times() {
    for good in
        ["2019-01-02T15:04:05Z", "2019-01-02T15:04:05.123456789Z", "2024-02-29T00:00:00+05:30", "2019-01-02t15:04:05z"]
    {
        assert!(is_rfc3339(good), "{good}");
    }
    for bad in [
        "",
        "yesterday",
        "2019-01-02",
        "2019-01-02 15:04:05Z",
        "2019-13-02T15:04:05Z",
        "2019-02-30T15:04:05Z",
        "2019-01-02T15:04:05",
        "2019-01-02T15:04:05.Z",
        "2019-01-02T24:00:00Z",
        "2019-01-02T15:04:05+0530",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}
