//! Throwaway databases for integration tests. Each test gets its own uniquely named database on
//! the server named by `SYNCLINE_TEST_POSTGRES_URL` / `SYNCLINE_TEST_MYSQL_URL`, and drops it when
//! done. Without the variable (or the server) a test prints a notice and skips — except under
//! `CI=true`, where a missing database is a failure.

use sqlx::{AssertSqlSafe, Connection};

/// A database created for one test.
pub struct TestDb {
    /// The URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
    kind: Kind,
    /// Whether `drop` removed it already; otherwise dropping the value does (a test that
    /// panics leaves no database behind).
    removed: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Postgres,
    Mysql,
}

fn skip_or_fail(var: &str, why: String) -> Option<TestDb> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{var}: {why} (required under CI=true)");
    }
    eprintln!("skipping: {var}: {why}");
    None
}

/// A fresh PostgreSQL database, or `None` (with a notice) outside CI when none is configured.
pub async fn postgres() -> Option<TestDb> {
    create("SYNCLINE_TEST_POSTGRES_URL", Kind::Postgres).await
}

/// A fresh MariaDB/MySQL database, or `None` (with a notice) outside CI when none is configured.
pub async fn mysql() -> Option<TestDb> {
    create("SYNCLINE_TEST_MYSQL_URL", Kind::Mysql).await
}

async fn create(var: &str, kind: Kind) -> Option<TestDb> {
    let admin_url = match std::env::var(var) {
        Ok(url) => url,
        Err(_) => return skip_or_fail(var, "not set".into()),
    };
    let name = format!("syncline_test_{}", uuid::Uuid::now_v7().simple());
    let result = match kind {
        Kind::Postgres => {
            async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
                conn.close().await
            }
            .await
        }
        Kind::Mysql => {
            async {
                let mut conn = sqlx::MySqlConnection::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
                conn.close().await
            }
            .await
        }
    };
    if let Err(e) = result {
        return skip_or_fail(var, format!("cannot create a test database: {e}"));
    }
    let url = replace_database(&admin_url, &name);
    Some(TestDb { url, admin_url, name, kind, removed: false })
}

impl TestDb {
    /// Drops the database (call at the end of the test).
    pub async fn drop(mut self) {
        self.remove().await;
        self.removed = true;
    }

    async fn remove(&self) {
        let result = match self.kind {
            Kind::Postgres => {
                async {
                    let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
                    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&mut conn).await?;
                    conn.close().await
                }
                .await
            }
            Kind::Mysql => {
                async {
                    let mut conn = sqlx::MySqlConnection::connect(&self.admin_url).await?;
                    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {}", self.name))).execute(&mut conn).await?;
                    conn.close().await
                }
                .await
            }
        };
        if let Err(e) = result {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// A test that failed before its `drop` still removes its database: on a thread of its own,
/// with a runtime of its own, since this may run inside the test's (a panicking) runtime.
impl Drop for TestDb {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let db =
            TestDb { url: self.url.clone(), admin_url: self.admin_url.clone(), name: self.name.clone(), kind: self.kind, removed: true };
        let removing = std::thread::spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(db.remove()),
            Err(e) => eprintln!("warning: could not drop test database {}: {e}", db.name),
        });
        let _ = removing.join();
    }
}

/// Swaps the database name in a `scheme://user@host:port/db?params` URL.
fn replace_database(url: &str, db: &str) -> String {
    let (base, params) = url.split_once('?').map_or((url, None), |(b, p)| (b, Some(p)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..].find('/').map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(p) = params {
        out.push('?');
        out.push_str(p);
    }
    out
}

/// The official API spec file `relative` (e.g. `hubspot/contacts.v3.json`) from the shared
/// `specs/` folder beside the project (`../shared/specs`, or `SYNCLINE_SPECS_DIR`), never copied
/// into the repository. Outside CI a missing folder prints a notice and gives `None`; under
/// `CI=true` it is a failure.
pub fn spec_file(relative: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SYNCLINE_SPECS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs"));
    let path = dir.join(relative);
    if path.is_file() {
        return Some(path);
    }
    let why = format!("spec file {} not found", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (required under CI=true)");
    }
    eprintln!("skipping: {why}");
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database() {
        assert_eq!(super::replace_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(super::replace_database("mysql://root@h/test?ssl-mode=disabled", "x"), "mysql://root@h/x?ssl-mode=disabled");
        assert_eq!(super::replace_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

#[cfg(test)]
mod cleanup {
    use super::*;

    /// A test that ends without `drop` (it failed first) still leaves no database behind.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_database_not_dropped_by_its_test_is_removed_anyway() {
        for db in [postgres().await, mysql().await].into_iter().flatten() {
            let (name, admin_url, kind) = (db.name.clone(), db.admin_url.clone(), db.kind);
            std::mem::drop(db); // as a panicking test's unwinding does
            let left: i64 = match kind {
                Kind::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                    sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                        .bind(&name)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap()
                }
                Kind::Mysql => {
                    let mut conn = sqlx::MySqlConnection::connect(&admin_url).await.unwrap();
                    let sql = "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?";
                    sqlx::query_scalar(sql).bind(&name).fetch_one(&mut conn).await.unwrap()
                }
            };
            assert_eq!(left, 0, "{name} was removed");
        }
    }
}
