//! `syncline example members`: a SQLite member table shaped like the seed users' SQL Server
//! table, with an exact share of rows carrying one defect each (so tests can count them).

use crate::cli::ExampleCommand;
use crate::exit::{CliError, CliResult, Exit};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use std::path::Path;

pub const PROVINCIAS: [&str; 7] = ["San José", "Alajuela", "Cartago", "Heredia", "Guanacaste", "Puntarenas", "Limón"];
const CANTONES: [&str; 7] = ["Escazú", "Grecia", "Paraíso", "Barva", "Liberia", "Esparza", "Pococí"];
const FIRST: [&str; 12] = ["Ana", "José", "María", "Luis", "Carmen", "Jorge", "Sofía", "Andrés", "Laura", "Diego", "Valeria", "Carlos"];
const LAST: [&str; 12] =
    ["Mora", "Rodríguez", "Jiménez", "Vargas", "Rojas", "Solís", "Araya", "Quesada", "Chaves", "Castro", "Alfaro", "Soto"];

/// The defects an invalid row carries, one each, in rotation; with the field and rule the
/// members pipeline reports for it.
pub const DEFECTS: [(&str, &str); 7] = [
    ("no__de_cedula", "cedula"),
    ("phone", "phone"),
    ("email", "email"),
    ("porcentaje__beneficiario_1_+porcentaje__beneficiario_2_+porcentaje__beneficiario_3_", "beneficiaries"),
    ("marital_status", "map_values"),
    ("firstname", "require"),
    ("provincia", "enum"),
];

pub const COLUMNS: [&str; 21] = [
    "numero_asociado",
    "no__de_cedula",
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "date_of_birth",
    "marital_status",
    "provincia",
    "canton",
    "distrito",
    "salario_bruto",
    "salario_neto",
    "nombre_beneficiario_1",
    "porcentaje__beneficiario_1_",
    "nombre_beneficiario_2",
    "porcentaje__beneficiario_2_",
    "nombre_beneficiario_3",
    "porcentaje__beneficiario_3_",
    "lastmodifieddate",
];

pub fn run(command: ExampleCommand) -> CliResult {
    let ExampleCommand::Members { db, rows, invalid, seed } = command;
    if !(0.0..=1.0).contains(&invalid) {
        return Err(CliError::usage(format!("--invalid must be a share between 0 and 1, got {invalid}")));
    }
    let runtime = tokio::runtime::Handle::current();
    let written = tokio::task::block_in_place(|| runtime.block_on(generate(&db, rows, invalid, seed))).map_err(CliError::failed)?;
    println!("wrote {} member rows ({} with one defect each) to {}", written.0, written.1, db.display());
    Ok(Exit::Ok)
}

/// One generated row's values, in `COLUMNS` order (text, as the seed's table holds them).
pub fn member_row(n: u64, defect: Option<usize>, rng: &mut fastrand::Rng, modified: &str) -> Vec<Option<String>> {
    let first = FIRST[rng.usize(..FIRST.len())];
    let last = LAST[rng.usize(..LAST.len())];
    let provincia_at = rng.usize(..PROVINCIAS.len());
    let cedula = format!("{}-{:04}-{:04}", 1 + n % 9, (n / 10_000) % 10_000, n % 10_000);
    let phone = format!("{}{:07}", [2, 4, 6, 7, 8][rng.usize(..5)], rng.u32(..10_000_000));
    let mobile = if rng.u8(..10) == 0 { "22120000".to_owned() } else { format!("8{:03}-{:04}", rng.u16(..1000), rng.u16(..10_000)) };
    let salary = rng.u32(300_000..3_000_000);
    let (p1, p2, p3) = match rng.u8(..3) {
        0 => ("100", "", ""),
        1 => ("50", "50", ""),
        _ => ("40", "30", "30"),
    };
    let mut row: Vec<Option<String>> = vec![
        Some(n.to_string()),
        Some(cedula),
        Some(format!(" {first} ")),
        Some(last.to_owned()),
        Some(format!("{}.{}{n}@Example.CR", first.to_lowercase(), last.to_lowercase())),
        Some(phone),
        Some(mobile),
        Some(format!("{}-{:02}-{:02}", 1940 + rng.u32(..65), 1 + rng.u32(..12), 1 + rng.u32(..28))),
        Some((1 + rng.u8(..5)).to_string()),
        Some(PROVINCIAS[provincia_at].to_owned()),
        Some(CANTONES[provincia_at].to_owned()),
        Some("Centro".to_owned()),
        Some(format!("{salary}.00")),
        Some(format!("{:.2}", salary as f64 * 0.89)),
        Some(format!("{} {}", FIRST[rng.usize(..FIRST.len())], last)),
        Some(p1.to_owned()),
        (!p2.is_empty()).then(|| format!("{} {}", FIRST[rng.usize(..FIRST.len())], last)),
        (!p2.is_empty()).then(|| p2.to_owned()),
        (!p3.is_empty()).then(|| format!("{} {}", FIRST[rng.usize(..FIRST.len())], last)),
        (!p3.is_empty()).then(|| p3.to_owned()),
        Some(modified.to_owned()),
    ];
    match defect {
        Some(0) => row[1] = Some(format!("0{:08}", n % 100_000_000)),
        Some(1) => row[5] = Some(format!("1{:07}", n % 10_000_000)),
        Some(2) => row[4] = Some(format!("{}.{}{n}@@example", first.to_lowercase(), last.to_lowercase())),
        Some(3) => row[15] = Some("90".to_owned()),
        Some(4) => row[8] = Some("9".to_owned()),
        Some(5) => row[2] = Some("   ".to_owned()),
        Some(6) => row[9] = Some("Atlántida".to_owned()),
        _ => {}
    }
    row
}

/// Whether row `i` (0-based) of a run carries a defect: exactly ⌊n·share⌋ of the first n rows do,
/// spread evenly.
pub fn is_invalid(i: u64, share: f64) -> bool {
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// Appends `rows` members after the highest existing number; returns (rows, invalid rows).
async fn generate(db: &Path, rows: u64, share: f64, seed: u64) -> Result<(u64, u64), String> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let options = SqliteConnectOptions::new().filename(db).create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS members ({}, PRIMARY KEY (numero_asociado)); CREATE INDEX IF NOT EXISTS members_modified ON members (lastmodifieddate, numero_asociado);",
        COLUMNS
            .iter()
            .map(|c| if *c == "numero_asociado" { format!("{c} INTEGER NOT NULL") } else { format!("{c} TEXT") })
            .collect::<Vec<_>>()
            .join(", ")
    );
    pool.execute(AssertSqlSafe(ddl)).await.map_err(|e| e.to_string())?;
    let (start,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(numero_asociado), 0) FROM members").fetch_one(&pool).await.map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date").and_hms_opt(0, 0, 0).expect("time");
    let per_statement = 500;
    let mut invalid = 0;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let mut i = 0;
    while i < rows {
        let n = per_statement.min(rows - i);
        let marks = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
        let sql = format!("INSERT INTO members ({}) VALUES {}", COLUMNS.join(", "), vec![marks; n as usize].join(", "));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for j in i..i + n {
            let number = start as u64 + j + 1;
            let defect = is_invalid(j, share).then(|| {
                invalid += 1;
                (invalid as usize - 1) % DEFECTS.len()
            });
            let modified = (base + chrono::Duration::seconds(number as i64)).format("%Y-%m-%d %H:%M:%S").to_string();
            for value in member_row(number, defect, &mut rng, &modified) {
                query = query.bind(value);
            }
        }
        query.execute(&mut *tx).await.map_err(|e| e.to_string())?;
        i += n;
        if i % 100_000 == 0 {
            tx.commit().await.map_err(|e| e.to_string())?;
            tx = pool.begin().await.map_err(|e| e.to_string())?;
        }
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    pool.close().await;
    Ok((rows, invalid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_invalid_share() {
        let count = (0..10_000).filter(|i| super::is_invalid(*i, 0.05)).count();
        assert_eq!(count, 500);
        assert_eq!((0..20_000).filter(|i| super::is_invalid(*i, 0.05)).count(), 1000);
        assert_eq!((0..100).filter(|i| super::is_invalid(*i, 0.0)).count(), 0);
    }
}
