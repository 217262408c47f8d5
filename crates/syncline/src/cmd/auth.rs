//! `syncline auth quickbooks`: connects the configured OAuth app to the company. It prints the
//! consent page's address; the user opens it, approves, and pastes back the address the browser
//! was sent to (or passes it as `--redirect`). The code in it becomes the first pair of tokens,
//! stored encrypted in the state store, and the company is asked its name to prove they work.

use std::io::BufRead;

use syncline_store::Store;

use crate::cli::AuthArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::output;

pub async fn run(config: &Config, store: &Store, args: AuthArgs) -> CliResult {
    let Some(connection) = &config.connections.quickbooks else {
        return Err(CliError::usage("the config has no connections.quickbooks: add realm_id, client_id, client_secret and redirect_uri"));
    };
    let api = crate::pipeline::quickbooks_api(connection, store)?;
    let state = uuid::Uuid::now_v7().simple().to_string();
    let consent = api.tokens().app().authorize_url(&connection.profile.authorize_url, &connection.redirect_uri, &state);
    let interactive = args.redirect.is_none();
    let redirect = match args.redirect {
        Some(redirect) => redirect,
        None => {
            eprintln!(
                "Open this address, connect the app to the company, then paste here the address your browser was sent back to:\n\n  {consent}\n"
            );
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(CliError::failed)?;
            line.trim().to_owned()
        }
    };
    let code = code_from(&redirect, interactive.then_some(state.as_str()), &connection.profile.realm_id)?;
    let tokens =
        api.tokens().app().exchange(&code, &connection.redirect_uri).await.map_err(|e| CliError::connector(&e, "auth quickbooks"))?;
    api.tokens().store_first(tokens).await.map_err(|e| CliError::connector(&e, "the state store"))?;
    let name = api.company_name().await.map_err(|e| CliError::connector(&e, "auth quickbooks"))?;
    output::line(format!(
        "connected to QuickBooks company {name:?} (realm {}); the tokens are stored encrypted in the state store",
        connection.profile.realm_id
    ));
    Ok(Exit::Ok)
}

/// The code of a consent redirect, checked: no refusal, the state sent (when this run sent
/// it), and the configured company.
fn code_from(redirect: &str, state: Option<&str>, realm_id: &str) -> Result<String, CliError> {
    let url = url::Url::parse(redirect)
        .map_err(|e| CliError::usage(format!("{redirect:?} is not an address ({e}); paste the whole address from the browser")))?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    if let Some(error) = param("error") {
        return Err(CliError::usage(format!(
            "the consent was not given ({error}); run `syncline auth quickbooks` again and approve the connection"
        )));
    }
    if let (Some(sent), Some(back)) = (state, param("state"))
        && sent != back
    {
        return Err(CliError::usage("the address answers another consent request (its state differs): paste the address of this one"));
    }
    let code = param("code")
        .ok_or_else(|| CliError::usage("the address has no code: paste the address the browser was sent back to after approving"))?;
    match param("realmId") {
        Some(realm) if realm != realm_id => Err(CliError::usage(format!(
            "the app was connected to company {realm}, but connections.quickbooks.realm_id is {realm_id}: set realm_id to {realm}, or connect company {realm_id}"
        ))),
        _ => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_gives_its_code_when_it_answers_this_request_for_this_company() {
        let redirect = "http://localhost:8080/cb?code=abc&state=s1&realmId=42";
        assert_eq!(code_from(redirect, Some("s1"), "42").unwrap(), "abc");
        assert_eq!(code_from(redirect, None, "42").unwrap(), "abc", "a pasted --redirect is not of this run's request");
        assert!(code_from(redirect, Some("s2"), "42").unwrap_err().message.contains("state differs"));
        assert!(code_from(redirect, Some("s1"), "7").unwrap_err().message.contains("realm_id to 42"));
        assert!(code_from("http://localhost/cb?error=access_denied", None, "42").unwrap_err().message.contains("access_denied"));
        assert!(code_from("not a url", None, "42").is_err());
    }
}
