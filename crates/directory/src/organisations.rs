//! Organisations, software statements and roles: the directory's registry. Names and JSON
//! shapes are the Raidiam Connect directory API's (PascalCase).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use certbound_store::{OrganisationRecord, SoftwareStatementRecord};

use crate::{Directory, DirectoryError};

/// A software role and the scopes it allows.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Role {
    /// Role name.
    #[serde(rename = "Role")]
    pub name: &'static str,
    /// The scopes it allows, in the seed's order.
    #[serde(rename = "Scopes")]
    pub scopes: &'static [&'static str],
    /// What it is for.
    #[serde(rename = "Description")]
    pub description: &'static str,
}

/// Every role the directory knows. A software statement's roles decide every scope it may hold.
pub const ROLES: &[Role] = &[
    Role {
        name: "programme-manager",
        scopes: &[
            "cards.read",
            "cards.write",
            "pin.read",
            "pin.write",
            "cvv.read",
            "cvv.write",
            "bulkcard.read",
            "bulkcard.write",
            "cards.encrypted",
        ],
        description: "Issue and manage cards: the seed's registered scope set",
    },
    Role {
        name: "ws",
        scopes: &["ws"],
        description: "Thredd web services",
    },
    Role {
        name: "bulk-cards",
        scopes: &["bulkcard.read", "bulkcard.write"],
        description: "Bulk card creation only",
    },
    Role {
        name: "card-reader",
        scopes: &["cards.read"],
        description: "Read card details only",
    },
];

/// The scopes a set of roles allows, deduplicated, in role order.
pub(crate) fn scopes_of(roles: &[String]) -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = Vec::new();
    for role in ROLES
        .iter()
        .filter(|role| roles.iter().any(|name| name == role.name))
    {
        for scope in role.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

/// An organisation as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Organisation {
    pub(crate) organisation_id: String,
    pub(crate) organisation_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) registration_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) country: Option<String>,
    pub(crate) status: String,
    pub(crate) created_on: String,
}

/// A software statement as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SoftwareStatement {
    pub(crate) software_statement_id: String,
    pub(crate) organisation_id: String,
    pub(crate) client_id: String,
    pub(crate) client_name: String,
    pub(crate) version: String,
    pub(crate) homepage_uri: String,
    pub(crate) logo_uri: String,
    pub(crate) redirect_uri: Vec<String>,
    pub(crate) roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) environment: String,
    pub(crate) mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api_webhook_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) on_behalf_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) origin_uri: Option<String>,
    pub(crate) status: String,
    pub(crate) created_on: String,
}

fn parse_json(body: &[u8]) -> Result<serde_json::Map<String, Value>, DirectoryError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DirectoryError::InvalidRequest(
            "the body must be a JSON object".into(),
        )),
        Err(error) => Err(DirectoryError::InvalidRequest(format!(
            "the body is not valid JSON: {error}"
        ))),
    }
}

/// A string field; `Ok(None)` when absent, null or blank.
fn optional_string(
    map: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, DirectoryError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_owned())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(DirectoryError::field(
            field,
            format!("{field} must be a string"),
        )),
    }
}

fn required_string(
    map: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<String, DirectoryError> {
    optional_string(map, field)?
        .ok_or_else(|| DirectoryError::field(field, format!("{field} is required")))
}

fn string_list(
    map: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, DirectoryError> {
    let values = match map.get(field) {
        None | Some(Value::Null) => {
            return Err(DirectoryError::field(field, format!("{field} is required")));
        }
        Some(Value::String(one)) => vec![Value::String(one.clone())],
        Some(Value::Array(values)) => values.clone(),
        Some(_) => {
            return Err(DirectoryError::field(
                field,
                format!("{field} must be an array of strings"),
            ));
        }
    };
    let list = values
        .into_iter()
        .map(|value| match value {
            Value::String(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            _ => Err(DirectoryError::field(
                field,
                format!("{field} must be an array of non-empty strings"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(DirectoryError::field(
            field,
            format!("{field} is required: give at least one"),
        ));
    }
    Ok(list)
}

/// An absolute `https` URI.
fn https_uri(field: &'static str, value: &str) -> Result<url::Url, DirectoryError> {
    let uri = url::Url::parse(value).map_err(|_| {
        DirectoryError::field(
            field,
            format!("{field} must be an absolute https URI, got `{value}`"),
        )
    })?;
    if uri.scheme() != "https" || uri.host_str().is_none_or(str::is_empty) {
        return Err(DirectoryError::field(
            field,
            format!("{field} must be an absolute https URI, got `{value}`"),
        ));
    }
    Ok(uri)
}

/// Where the Cards API POSTs events: the URI it signs (RFC 9421 `@target-uri`) is the one it
/// sends, so no credentials (never sent as such) and no fragment (never sent at all).
fn webhook_uri(value: &str) -> Result<(), DirectoryError> {
    let uri = https_uri("ApiWebhookUri", value)?;
    if !uri.username().is_empty() || uri.password().is_some() || uri.fragment().is_some() {
        return Err(DirectoryError::field(
            "ApiWebhookUri",
            format!("ApiWebhookUri must carry no credentials and no #fragment, got `{value}`"),
        ));
    }
    Ok(())
}

const IMAGE_TYPES: &[&str] = &[
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp",
];

fn logo_uri(value: &str) -> Result<(), DirectoryError> {
    let uri = https_uri("LogoUri", value)?;
    let path = uri.path().to_ascii_lowercase();
    if !IMAGE_TYPES.iter().any(|suffix| path.ends_with(suffix)) {
        return Err(DirectoryError::field(
            "LogoUri",
            format!(
                "LogoUri must name an image file ({}), got `{value}`",
                IMAGE_TYPES.join(", ")
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn load_organisation(
    directory: &Directory,
    id: &str,
) -> Result<Organisation, DirectoryError> {
    let record = directory
        .store
        .organisation(id)
        .await?
        .ok_or_else(|| DirectoryError::NotFound(format!("organisation {id} does not exist")))?;
    serde_json::from_str(&record.body).map_err(|error| DirectoryError::Internal(error.to_string()))
}

pub(crate) async fn load_software_statement(
    directory: &Directory,
    organisation_id: &str,
    id: &str,
) -> Result<SoftwareStatement, DirectoryError> {
    let record = directory
        .store
        .software_statement(id)
        .await?
        .filter(|record| record.organisation_id == organisation_id)
        .ok_or_else(|| {
            DirectoryError::NotFound(format!(
                "software statement {id} does not exist in organisation {organisation_id}"
            ))
        })?;
    serde_json::from_str(&record.body).map_err(|error| DirectoryError::Internal(error.to_string()))
}

/// `POST /organisations`.
pub(crate) async fn create_organisation(
    State(directory): State<Arc<Directory>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Organisation>), DirectoryError> {
    let organisation = new_organisation(&directory, &parse_json(&body)?).await?;
    Ok((StatusCode::CREATED, Json(organisation)))
}

/// Creates an organisation from the API's fields (`OrganisationName`, `RegistrationNumber?`,
/// `Country?`): the one rule for the admin API and the console.
pub(crate) async fn new_organisation(
    directory: &Directory,
    map: &serde_json::Map<String, Value>,
) -> Result<Organisation, DirectoryError> {
    let name = required_string(map, "OrganisationName")?;
    let country = optional_string(map, "Country")?.map(|country| country.to_ascii_uppercase());
    if let Some(country) = &country
        && !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(DirectoryError::field(
            "Country",
            format!("Country must be an ISO 3166-1 alpha-2 code such as GB, got `{country}`"),
        ));
    }
    let now = certbound_store::clock::now();
    let organisation = Organisation {
        organisation_id: uuid::Uuid::new_v4().to_string(),
        organisation_name: name,
        registration_number: optional_string(map, "RegistrationNumber")?,
        country,
        status: "Active".into(),
        created_on: crate::rfc3339(now),
    };
    let body = serde_json::to_string(&organisation)
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    directory.audit.record(
        "directory",
        "organisation_created",
        now,
        serde_json::json!({"organisation_id": organisation.organisation_id}),
    )?;
    directory
        .store
        .insert_organisation(&OrganisationRecord {
            id: organisation.organisation_id.clone(),
            body,
            created_at: now,
        })
        .await?;
    tracing::info!(organisation_id = %organisation.organisation_id, "organisation created");
    Ok(organisation)
}

/// Every organisation, oldest first.
pub(crate) async fn organisations(
    directory: &Directory,
) -> Result<Vec<Organisation>, DirectoryError> {
    let records = directory.store.organisations().await?;
    records
        .iter()
        .map(|record| serde_json::from_str(&record.body))
        .collect::<Result<_, _>>()
        .map_err(|error| DirectoryError::Internal(error.to_string()))
}

/// `GET /organisations`.
pub(crate) async fn list_organisations(
    State(directory): State<Arc<Directory>>,
) -> Result<Json<Vec<Organisation>>, DirectoryError> {
    Ok(Json(organisations(&directory).await?))
}

/// `GET /organisations/{OrganisationId}`.
pub(crate) async fn show_organisation(
    State(directory): State<Arc<Directory>>,
    Path(organisation_id): Path<String>,
) -> Result<Json<Organisation>, DirectoryError> {
    Ok(Json(load_organisation(&directory, &organisation_id).await?))
}

/// `POST /organisations/{OrganisationId}/softwarestatements`.
pub(crate) async fn create_software_statement(
    State(directory): State<Arc<Directory>>,
    Path(organisation_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<SoftwareStatement>), DirectoryError> {
    let statement =
        new_software_statement(&directory, &organisation_id, &parse_json(&body)?).await?;
    Ok((StatusCode::CREATED, Json(statement)))
}

/// Creates a software statement (the seed's "Create an Application") in an existing
/// organisation from the API's fields: the one rule for the admin API and the console.
pub(crate) async fn new_software_statement(
    directory: &Directory,
    organisation_id: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<SoftwareStatement, DirectoryError> {
    load_organisation(directory, organisation_id).await?;
    let client_name = required_string(map, "ClientName")?;
    let version = required_string(map, "Version")?;
    let homepage_uri = required_string(map, "HomepageUri")?;
    https_uri("HomepageUri", &homepage_uri)?;
    let logo = required_string(map, "LogoUri")?;
    logo_uri(&logo)?;
    let redirect_uri = string_list(map, "RedirectUri")?;
    for uri in &redirect_uri {
        https_uri("RedirectUri", uri)?;
    }
    let roles = string_list(map, "Roles")?;
    for role in &roles {
        if !ROLES.iter().any(|known| known.name == role) {
            let known: Vec<_> = ROLES.iter().map(|role| role.name).collect();
            return Err(DirectoryError::field(
                "Roles",
                format!(
                    "Roles: unknown role `{role}`; the roles are {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let optional_uri = |field: &'static str| -> Result<Option<String>, DirectoryError> {
        let value = optional_string(map, field)?;
        if let Some(value) = &value {
            https_uri(field, value)?;
        }
        Ok(value)
    };
    let api_webhook_uri = optional_uri("ApiWebhookUri")?;
    if let Some(uri) = &api_webhook_uri {
        webhook_uri(uri)?;
    }
    let origin_uri = optional_uri("OriginUri")?;
    let now = certbound_store::clock::now();
    let id = uuid::Uuid::new_v4().to_string();
    let statement = SoftwareStatement {
        client_id: directory.client_id(&id),
        software_statement_id: id,
        organisation_id: organisation_id.to_owned(),
        client_name,
        version,
        homepage_uri,
        logo_uri: logo,
        redirect_uri,
        roles,
        description: optional_string(map, "Description")?,
        environment: optional_string(map, "Environment")?.unwrap_or_else(|| "Sandbox".into()),
        mode: optional_string(map, "Mode")?.unwrap_or_else(|| "Live".into()),
        api_webhook_uri,
        on_behalf_of: optional_string(map, "OnBehalfOf")?,
        origin_uri,
        status: "Active".into(),
        created_on: crate::rfc3339(now),
    };
    let body = serde_json::to_string(&statement)
        .map_err(|error| DirectoryError::Internal(error.to_string()))?;
    directory.audit.record(
        "directory",
        "software_statement_created",
        now,
        serde_json::json!({"software_statement_id": statement.software_statement_id, "organisation_id": statement.organisation_id, "roles": statement.roles}),
    )?;
    directory
        .store
        .insert_software_statement(&SoftwareStatementRecord {
            id: statement.software_statement_id.clone(),
            organisation_id: organisation_id.to_owned(),
            body,
            created_at: now,
        })
        .await?;
    tracing::info!(software_statement_id = %statement.software_statement_id, "software statement created");
    Ok(statement)
}

/// `GET /organisations/{OrganisationId}/softwarestatements`.
pub(crate) async fn list_software_statements(
    State(directory): State<Arc<Directory>>,
    Path(organisation_id): Path<String>,
) -> Result<Json<Vec<SoftwareStatement>>, DirectoryError> {
    load_organisation(&directory, &organisation_id).await?;
    Ok(Json(
        software_statements(&directory, &organisation_id).await?,
    ))
}

/// An organisation's software statements, oldest first.
pub(crate) async fn software_statements(
    directory: &Directory,
    organisation_id: &str,
) -> Result<Vec<SoftwareStatement>, DirectoryError> {
    let records = directory.store.software_statements(organisation_id).await?;
    records
        .iter()
        .map(|record| serde_json::from_str(&record.body))
        .collect::<Result<_, _>>()
        .map_err(|error| DirectoryError::Internal(error.to_string()))
}

/// `GET /organisations/{OrganisationId}/softwarestatements/{SoftwareStatementId}`.
pub(crate) async fn show_software_statement(
    State(directory): State<Arc<Directory>>,
    Path((organisation_id, software_statement_id)): Path<(String, String)>,
) -> Result<Json<SoftwareStatement>, DirectoryError> {
    Ok(Json(
        load_software_statement(&directory, &organisation_id, &software_statement_id).await?,
    ))
}

/// `GET /roles`.
pub(crate) async fn list_roles() -> Json<&'static [Role]> {
    Json(ROLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logo_must_be_an_image_over_https() {
        assert!(logo_uri("https://example.com/logo.png").is_ok());
        assert!(logo_uri("https://example.com/logo.PNG?v=1").is_ok());
        assert!(logo_uri("https://example.com/logo").is_err());
        assert!(logo_uri("http://example.com/logo.png").is_err());
        assert!(logo_uri("/logo.png").is_err());
    }

    #[test]
    fn webhook_uris_carry_no_credentials_or_fragment() {
        assert!(webhook_uri("https://pm.example.com/events?x=1").is_ok());
        for refused in [
            "https://user:secret@pm.example.com/events",
            "https://user@pm.example.com/events",
            "https://pm.example.com/events#part",
            "http://pm.example.com/events",
        ] {
            let error = webhook_uri(refused).unwrap_err();
            assert!(
                matches!(
                    error,
                    DirectoryError::InvalidField {
                        field: "ApiWebhookUri",
                        ..
                    }
                ),
                "{refused}: {error:?}"
            );
        }
    }

    #[test]
    fn scopes_come_from_roles() {
        assert_eq!(
            scopes_of(&["card-reader".into(), "bulk-cards".into()]),
            vec!["bulkcard.read", "bulkcard.write", "cards.read"]
        );
        assert_eq!(scopes_of(&["programme-manager".into()]).len(), 9);
    }
}
