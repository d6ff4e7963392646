use super::*;

fn get(path: &str) -> Result<Route, GoError> {
    parse(&Method::GET, path, None)
}

fn module(p: &str) -> ModulePath {
    ModulePath::new(p).unwrap()
}

#[test]
fn downloads() {
    assert_eq!(get("example.com/m/@v/list").unwrap(), Route::GetList { module: module("example.com/m") });
    assert_eq!(get("example.com/m/@latest").unwrap(), Route::GetLatest { module: module("example.com/m") });
    assert_eq!(
        get("example.com/!big!corp/lib/@v/v1.0.0.zip").unwrap(),
        Route::GetZip { module: module("example.com/BigCorp/lib"), version: Version::parse("v1.0.0").unwrap() }
    );
    assert_eq!(
        get("example.com/%21big/@v/v2.0.0+incompatible.mod").unwrap(),
        Route::GetMod { module: module("example.com/Big"), version: Version::parse("v2.0.0+incompatible").unwrap() }
    );
    assert_eq!(
        get("example.com/m/@v/!master.info").unwrap(),
        Route::GetInfo { module: module("example.com/m"), query: "Master".into() }
    );
    assert!(matches!(parse(&Method::HEAD, "example.com/m/@v/v1.0.0.info", None), Ok(Route::GetInfo { .. })));
}

#[test]
fn uploads() {
    assert_eq!(
        parse(&Method::PUT, "example.com/m/v2/@v/v2.1.0.zip", None).unwrap(),
        Route::Put {
            module: module("example.com/m/v2"),
            version: Version::parse("v2.1.0").unwrap(),
            file: FileKind::Zip
        }
    );
    assert_eq!(parse(&Method::POST, "api/upload", None).unwrap(), Route::Upload);
    assert_eq!(action(&Route::Upload), Action::Write);
    assert_eq!(action(&get("example.com/m/@v/list").unwrap()), Action::Read);
}

#[test]
fn sumdb_paths() {
    let route = get("sumdb/sum.example.com/lookup/example.com/m@v1.0.0").unwrap();
    assert_eq!(
        route,
        Route::Sumdb {
            name: "sum.example.com".into(),
            path: "lookup/example.com/m@v1.0.0".into(),
            kind: SumdbKind::Lookup
        }
    );
    assert!(matches!(get("sumdb/s.example/supported"), Ok(Route::Sumdb { kind: SumdbKind::Supported, .. })));
    assert!(matches!(get("sumdb/s.example/latest"), Ok(Route::Sumdb { kind: SumdbKind::Latest, .. })));
    assert!(matches!(get("sumdb/s.example/tile/8/0/001.p/5"), Ok(Route::Sumdb { kind: SumdbKind::Tile, .. })));
}

#[test]
fn bad_input() {
    let status = |r: Result<Route, GoError>| r.unwrap_err().status();
    assert_eq!(status(get("example.com/m")), 404);
    assert_eq!(status(get("example.com/m/@v/")), 404);
    assert_eq!(status(get("example.com/m/@v/v1.0.0.tar")), 404);
    assert_eq!(status(get("example.com/m/@v/v1.0.zip")), 404, "non-canonical zip");
    assert_eq!(status(get("example.com/Big/@v/list")), 400, "capitals must be escaped");
    assert_eq!(status(get("example.com/!/@v/list")), 400);
    assert_eq!(status(get("nodot/@v/list")), 400);
    assert_eq!(status(get("example.com/m/@v/%zz.info")), 400);
    assert_eq!(status(parse(&Method::PUT, "example.com/m/@v/v1.0.zip", None)), 400);
    assert_eq!(status(parse(&Method::PUT, "example.com/m/@v/list", None)), 405);
    assert_eq!(status(parse(&Method::DELETE, "example.com/m/@v/v1.0.0.zip", None)), 405);
    assert_eq!(status(parse(&Method::GET, "api/upload", None)), 405);
    assert_eq!(status(get("sumdb/s.example/lookup/../x")), 404);
    assert_eq!(status(get("sumdb/s.example/other")), 404);
    assert_eq!(status(get("sumdb/")), 404);
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%21b").as_deref(), Some("a!b"));
    assert_eq!(percent_decode("a%2").as_deref(), None);
    assert_eq!(percent_decode("%ff").as_deref(), None);
}
