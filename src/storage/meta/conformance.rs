//! The MetaStore conformance suite: one set of checks every engine must pass (SQLite, PostgreSQL).
//! Each check uses its own repository names, so all run against one store.

use super::{MetaStore, UploadSession};
use crate::model::Entry;

fn entry(repo: &str, path: &str, package: &str, refers_to: Option<&str>) -> Entry {
    Entry {
        repo: repo.into(),
        path: path.into(),
        digest: "sha256:aa".into(),
        blob: "aa".into(),
        size: 1,
        package: Some(package.into()),
        refers_to: refers_to.map(str::to_string),
        attrs: serde_json::json!({"k": 1}),
        created_at: 10,
        checked_at: 10,
        ..Default::default()
    }
}

pub async fn run_all(store: &dyn MetaStore) {
    catalog_queries(store).await;
    byte_order_and_prefixes(store).await;
    replace_keeps_created_at(store).await;
    touch_and_delete(store).await;
    uploads(store).await;
}

async fn catalog_queries(store: &dyn MetaStore) {
    for (p, pkg, r) in [
        ("a/tags/1", "a", None),
        ("a/tags/2", "a", None),
        ("a/manifests/x", "a", Some("sha256:s")),
        ("a%/tags/3", "a%", None),
        ("b/tags/1", "b", None),
    ] {
        store.put_entry(&entry("cq", p, pkg, r)).await.unwrap();
    }
    let tags = store.list_entries("cq", "a/tags/", None, 10).await.unwrap();
    assert_eq!(tags.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["a/tags/1", "a/tags/2"]);
    assert_eq!(tags[0], entry("cq", "a/tags/1", "a", None), "an entry reads back as written");
    let page = store.list_entries("cq", "a/tags/", Some("a/tags/1"), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(store.list_entries("cq", "", None, 2).await.unwrap().len(), 2, "limit");
    assert_eq!(store.list_packages("cq", None, 10).await.unwrap(), ["a", "a%", "b"]);
    assert_eq!(store.list_packages("cq", Some("a%"), 1).await.unwrap(), ["b"]);
    assert_eq!(store.list_referring("cq", "a/manifests/", "sha256:s").await.unwrap().len(), 1);
    assert!(store.list_referring("cq", "a/tags/", "sha256:s").await.unwrap().is_empty());
    assert!(store.get_entry("other", "a/tags/2").await.unwrap().is_none());
}

/// Paths compare as bytes (like SQLite), whatever the database's locale.
async fn byte_order_and_prefixes(store: &dyn MetaStore) {
    for p in ["x/B", "x/a", "x/_", "x/Ä", "x/z", "x/\u{1F600}", "y/a"] {
        store.put_entry(&entry("bo", p, "x", None)).await.unwrap();
    }
    let all = store.list_entries("bo", "x/", None, 100).await.unwrap();
    let paths: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["x/B", "x/_", "x/a", "x/z", "x/Ä", "x/\u{1F600}"]);
    let after = store.list_entries("bo", "x/", Some("x/z"), 100).await.unwrap();
    assert_eq!(after.len(), 2);
    assert!(store.list_entries("bo", "x/_%", None, 100).await.unwrap().is_empty(), "no LIKE patterns");
}

async fn replace_keeps_created_at(store: &dyn MetaStore) {
    let first = entry("rk", "p", "p", None);
    store.put_entry(&first).await.unwrap();
    let same = Entry { created_at: 99, checked_at: 50, etag: Some("e".into()), ..first.clone() };
    store.put_entry(&same).await.unwrap();
    let got = store.get_entry("rk", "p").await.unwrap().unwrap();
    assert_eq!((got.created_at, got.checked_at, got.etag.as_deref()), (10, 50, Some("e")));
    let changed = Entry { digest: "sha256:bb".into(), created_at: 99, size: 1 << 40, ..first };
    store.put_entry(&changed).await.unwrap();
    let got = store.get_entry("rk", "p").await.unwrap().unwrap();
    assert_eq!((got.created_at, got.size, got.digest.as_str()), (99, 1 << 40, "sha256:bb"));
}

async fn touch_and_delete(store: &dyn MetaStore) {
    store.put_entry(&entry("td", "p", "p", None)).await.unwrap();
    store.touch_entry("td", "p", 77).await.unwrap();
    store.touch_entry("td", "missing", 77).await.unwrap();
    assert_eq!(store.get_entry("td", "p").await.unwrap().unwrap().checked_at, 77);
    assert!(store.delete_entry("td", "p").await.unwrap());
    assert!(!store.delete_entry("td", "p").await.unwrap());
    assert!(store.get_entry("td", "p").await.unwrap().is_none());
}

async fn uploads(store: &dyn MetaStore) {
    let u = UploadSession { id: "u-conf".into(), repo: "r".into(), package: "p".into(), created_at: 5 };
    store.create_upload(&u).await.unwrap();
    assert!(store.create_upload(&u).await.is_err(), "upload ids are unique");
    assert_eq!(store.get_upload("u-conf").await.unwrap(), Some(u.clone()));
    assert_eq!(store.list_uploads(6, 10).await.unwrap(), vec![u], "older than 6");
    assert_eq!(store.list_uploads(5, 10).await.unwrap(), vec![], "strictly older");
    store.delete_upload("u-conf").await.unwrap();
    assert_eq!(store.get_upload("u-conf").await.unwrap(), None);
}

mod engines {
    use super::run_all;
    use crate::storage::meta::cached::CachedMetaStore;
    use crate::storage::meta::postgres::{listen_invalidations, Invalidation, PostgresMetaStore};
    use crate::storage::meta::sqlite::SqliteMetaStore;
    use crate::storage::meta::MetaStore;
    use crate::storage::testkit::Postgres;
    use std::sync::Arc;

    #[tokio::test]
    async fn sqlite_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run_all(&SqliteMetaStore::open(&dir.path().join("m.db")).await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres_conforms_and_migrates_once_under_concurrent_starts() {
        let Some(pg) = Postgres::start() else { return };
        let (a, b) = tokio::join!(PostgresMetaStore::open(&pg.url), PostgresMetaStore::open(&pg.url));
        let (a, _b) = (a.unwrap(), b.unwrap());
        run_all(&a).await;
        let cached = CachedMetaStore::new(Arc::new(PostgresMetaStore::open(&pg.url).await.unwrap()));
        run_all(&cached).await;
    }

    /// Node B's cache drops an entry node A rewrites, through LISTEN/NOTIFY.
    #[tokio::test]
    async fn postgres_notifies_other_nodes() {
        let Some(pg) = Postgres::start() else { return };
        let a = PostgresMetaStore::open(&pg.url).await.unwrap();
        let b = PostgresMetaStore::open(&pg.url).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = b.pool().clone();
        tokio::spawn(listen_invalidations(pool, move |i| {
            let _ = tx.send(i);
        }));
        assert_eq!(rx.recv().await, Some(Invalidation::All), "subscribed");
        let cached_b = CachedMetaStore::new(Arc::new(b));
        let e = super::entry("n", "p", "p", None);
        a.put_entry(&e).await.unwrap();
        // Reading may race the first notification: wait for it (bounded by the test's messages).
        assert!(matches!(rx.recv().await, Some(Invalidation::Entry { .. })));
        assert_eq!(cached_b.get_entry("n", "p").await.unwrap().unwrap().digest, "sha256:aa");
        a.put_entry(&crate::model::Entry { digest: "sha256:bb".into(), ..e }).await.unwrap();
        assert_eq!(cached_b.get_entry("n", "p").await.unwrap().unwrap().digest, "sha256:aa", "cached");
        match rx.recv().await {
            Some(Invalidation::Entry { repo, path }) => cached_b.invalidate(&repo, &path),
            other => panic!("expected an entry invalidation, got {other:?}"),
        }
        assert_eq!(cached_b.get_entry("n", "p").await.unwrap().unwrap().digest, "sha256:bb");
    }

    /// A named lock held by one store makes another store (another node) wait until it drops.
    #[tokio::test]
    async fn postgres_named_locks_exclude_across_nodes() {
        use crate::storage::lease::{Lease, Leases, NamedLocks};
        use std::time::Duration;
        let Some(pg) = Postgres::start() else { return };
        let a = PostgresMetaStore::open(&pg.url).await.unwrap();
        let b = Arc::new(PostgresMetaStore::open(&pg.url).await.unwrap());
        let held = a.lock("writes\nr").await.unwrap();
        let acquired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (b, acquired) = (b.clone(), acquired.clone());
            tokio::spawn(async move {
                let guard = b.lock("writes\nr").await.unwrap();
                acquired.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(guard);
            })
        };
        // Bounded poll until the second lock request waits inside PostgreSQL.
        let mut polls = 0;
        loop {
            let waiting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    .fetch_one(a.pool())
                    .await
                    .unwrap();
            if waiting == 1 {
                break;
            }
            polls += 1;
            assert!(polls < 10_000, "the second lock never queued");
            tokio::task::yield_now().await;
        }
        assert!(!acquired.load(std::sync::atomic::Ordering::SeqCst));
        let other = a.lock("writes\nother").await.unwrap();
        drop(other);
        drop(held);
        waiter.await.unwrap();
        assert!(acquired.load(std::sync::atomic::Ordering::SeqCst));

        // Leases: one winner; the owner renews; another node takes over only after expiry.
        let ttl = Duration::from_secs(60);
        assert_eq!(a.acquire("k", "node-a", "http://a", ttl).await.unwrap(), Lease::Mine);
        let held_by_a = Lease::Held { owner: "node-a".into(), node_url: "http://a".into() };
        assert_eq!(b.acquire("k", "node-b", "http://b", ttl).await.unwrap(), held_by_a);
        assert!(a.renew("k", "node-a", ttl).await.unwrap());
        assert!(!b.renew("k", "node-b", ttl).await.unwrap());
        assert!(a.renew("k", "node-a", Duration::ZERO).await.unwrap(), "expire now");
        assert_eq!(b.acquire("k", "node-b", "http://b", ttl).await.unwrap(), Lease::Mine, "taken over");
        b.release("k", "node-b").await.unwrap();
        assert_eq!(a.acquire("k", "node-a", "http://a", ttl).await.unwrap(), Lease::Mine);
    }
}
