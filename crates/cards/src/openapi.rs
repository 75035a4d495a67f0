//! The OpenAPI 3 document of the Cards API, served at `/api/v1/openapi.json`. It is written here
//! next to the router, and a test checks that every route of the router is documented and every
//! documented path is routed (`ROUTES`).

use axum::Json;
use serde_json::{Value, json};

/// Every (method, path) the router serves under `/api/v1`, as documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/cards"),
    ("get", "/cards/{publicToken}"),
    ("patch", "/cards/{publicToken}"),
    ("get", "/cards/{publicToken}/status"),
    ("put", "/cards/{publicToken}/status"),
    ("get", "/cards/{publicToken}/pin"),
    ("post", "/cards/{publicToken}/pin"),
    ("get", "/cards/{publicToken}/cvv"),
    ("get", "/cards/{publicToken}/cvv/status"),
    ("post", "/cards/{publicToken}/cvv/status"),
    ("post", "/cards/{publicToken}/encrypted"),
    ("get", "/keys"),
    ("post", "/cards/bulk"),
    ("get", "/cards/bulk"),
    ("post", "/cards/{publicToken}/transactions"),
    ("get", "/cards/{publicToken}/transactions"),
    ("get", "/cards/{publicToken}/balance"),
    ("post", "/sandbox/cards/{publicToken}/authorisations"),
    (
        "post",
        "/sandbox/cards/{publicToken}/authorisations/{authorisationId}/clear",
    ),
    (
        "post",
        "/sandbox/cards/{publicToken}/authorisations/{authorisationId}/reverse",
    ),
    ("get", "/webhooks/notifications"),
    ("post", "/webhooks/notifications/resend"),
    ("post", "/cards/{publicToken}/replace"),
    ("post", "/cards/{publicToken}/renew"),
    ("patch", "/cards/{publicToken}/card-type"),
    ("post", "/cards/{publicToken}/card-type"),
];

fn error_responses(extra: &[(&str, &str)]) -> Value {
    let mut responses = json!({
        "400": {"description": "Validation error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        "401": {"description": "Missing, expired, revoked or wrongly bound token (WWW-Authenticate: Bearer error=\"invalid_token\")", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        "403": {"description": "Missing scope (insufficient_scope)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        "404": {"description": "No such card for this organisation", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        "413": {"description": "Body too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    });
    if let Value::Object(map) = &mut responses {
        for (code, description) in extra {
            map.insert((*code).to_owned(), json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}));
        }
    }
    responses
}

fn operation(
    summary: &str,
    scope: Option<&str>,
    body: Option<&str>,
    ok: (&str, Option<&str>),
    extra: &[(&str, &str)],
) -> Value {
    let mut responses = error_responses(extra);
    let (code, schema) = ok;
    let success = match schema {
        Some(schema) => {
            json!({"description": "Success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
        }
        None => json!({"description": "Success"}),
    };
    if let Value::Object(map) = &mut responses {
        map.insert(code.to_owned(), success);
    }
    let mut op = json!({
        "summary": summary,
        "responses": responses,
        "security": match scope { Some(scope) => json!([{"bearer": [scope]}]), None => json!([]) },
    });
    if let (Some(schema), Value::Object(map)) = (body, &mut op) {
        map.insert("requestBody".into(), json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}));
    }
    op
}

fn with_token(mut op: Value) -> Value {
    if let Value::Object(map) = &mut op {
        map.insert(
            "parameters".into(),
            json!([{"$ref": "#/components/parameters/publicToken"}]),
        );
    }
    op
}

fn idempotent(mut op: Value) -> Value {
    if let Some(Value::Array(parameters)) = op.get_mut("parameters") {
        parameters.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
    } else if let Value::Object(map) = &mut op {
        map.insert(
            "parameters".into(),
            json!([{"$ref": "#/components/parameters/IdempotencyKey"}]),
        );
    }
    op
}

/// The ledger's calls and schemas (DESIGN.md section 11), added to the document.
fn add_ledger(spec: &mut Value) {
    let money = json!({"oneOf": [{"type": "number", "minimum": 0, "exclusiveMinimum": true}, {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}],
        "description": "a decimal number of the currency's units, or the same as a string: read exactly, never as a float"});
    let balance = json!({"type": "object", "properties": {
        "currencyCode": {"type": "string"}, "cardBalance": {"type": "number"},
        "pendingAmount": {"type": "number"}, "availableBalance": {"type": "number"}}});
    let mut list = with_token(operation(
        "The card's transactions, in order, each with the balances it left",
        Some("cards.read"),
        None,
        ("200", Some("TransactionList")),
        &[],
    ));
    if let Some(Value::Array(parameters)) = list.get_mut("parameters") {
        for name in ["fromDate", "toDate"] {
            parameters.push(json!({"name": name, "in": "query", "required": false,
                "schema": {"type": "string", "pattern": "^[0-9]{8}$"}, "description": "YYYYMMDD (UTC)"}));
        }
    }
    if let Some(Value::Object(paths)) = spec.get_mut("paths") {
        paths.insert("/cards/{publicToken}/transactions".into(), json!({
            "post": idempotent(with_token(operation(
                "Post a transaction: Load, Unload, TransferFunds (both legs, atomically), BalanceAdjustment or Fee",
                Some("cards.write"),
                Some("PostTransaction"),
                ("200", Some("Posted")),
                &[("409", "the card kept changing under the request: retry it"),
                  ("422", "more than the available balance, another currency than the card's, a status that forbids it, over the product's maximum balance")],
            ))),
            "get": list,
        }));
        paths.insert("/sandbox/cards/{publicToken}/authorisations".into(), json!({
            "post": idempotent(with_token(operation(
                "Sandbox card network (certbound's own; off with [sandbox] card_network = false): authorise a purchase. Approved (00) holds the amount; declined answers the ISO 8583 code (05 blocked, 41 lost, 43 stolen, 51 insufficient funds, 54 expired, 62 restricted)",
                Some("cards.write"),
                Some("Authorise"),
                ("201", Some("Authorisation")),
                &[("422", "another currency than the card's (the sandbox converts nothing)")],
            ))),
        }));
        for (verb, summary) in [
            (
                "clear",
                "Sandbox card network: clear (present) a pending authorisation: the hold becomes a debit, whatever the balance",
            ),
            (
                "reverse",
                "Sandbox card network: reverse a pending authorisation: the hold is released",
            ),
        ] {
            let mut op = with_token(operation(
                summary,
                Some("cards.write"),
                None,
                ("200", Some("Settled")),
                &[("409", "the authorisation is not pending")],
            ));
            if let Some(Value::Array(parameters)) = op.get_mut("parameters") {
                parameters.push(json!({"name": "authorisationId", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}));
            }
            if let (true, Value::Object(map)) = (verb == "clear", &mut op) {
                map.insert("requestBody".into(), json!({"required": false, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": false,
                    "properties": {"amount": money.clone()},
                    "description": "the amount presented, if not the one authorised (a tip): it posts even below zero"}}}}));
            }
            paths.insert(
                format!("/sandbox/cards/{{publicToken}}/authorisations/{{authorisationId}}/{verb}"),
                json!({"post": idempotent(op)}),
            );
        }
        let mut undelivered = operation(
            "Webhook notifications of the caller's organisation not delivered yet (pending or given up on), oldest first",
            Some("cards.read"),
            None,
            ("200", Some("Notifications")),
            &[],
        );
        if let Value::Object(map) = &mut undelivered {
            map.insert(
                "parameters".into(),
                json!([{"name": "status", "in": "query", "required": false,
                "schema": {"type": "string", "enum": ["undelivered"]}}]),
            );
        }
        paths.insert(
            "/webhooks/notifications".into(),
            json!({"get": undelivered}),
        );
        paths.insert(
            "/webhooks/notifications/resend".into(),
            json!({
                "post": operation(
                    "Send notifications again (the same notificationId; each in its card's order)",
                    Some("cards.write"),
                    Some("Resend"),
                    ("200", Some("Resent")),
                    &[],
                ),
            }),
        );
        let convert = || {
            idempotent(with_token(operation(
                "Convert a virtual card to physical (only from an active card)",
                Some("cards.write"),
                Some("ConvertCard"),
                ("200", Some("Converted")),
                &[
                    ("409", "the card is not active"),
                    ("422", "the card is not virtual"),
                ],
            )))
        };
        paths.insert(
            "/cards/{publicToken}/card-type".into(),
            json!({"patch": convert(), "post": convert()}),
        );
        let mut replace = idempotent(with_token(operation(
            "Replace a card: a new card for the same holder; the old one is blocked (unless already lost, stolen or destroyed) and never active again",
            Some("cards.write"),
            None,
            ("200", Some("CreatedCard")),
            &[("409", "the card is closed, or replaced already")],
        )));
        if let Value::Object(map) = &mut replace {
            map.insert("requestBody".into(), json!({"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReplaceCard"}}}}));
        }
        paths.insert(
            "/cards/{publicToken}/replace".into(),
            json!({"post": replace}),
        );
        let mut renew = idempotent(with_token(operation(
            "Renew a card: Renew (new expiry and CVV), Migrate (new PAN and CVV) or RenewWithSameExpiry (new CVV)",
            Some("cards.write"),
            None,
            ("204", None),
            &[("409", "the card is in a terminal status or replaced")],
        )));
        if let Value::Object(map) = &mut renew {
            map.insert("requestBody".into(), json!({"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RenewCard"}}}}));
        }
        paths.insert("/cards/{publicToken}/renew".into(), json!({"post": renew}));
        paths.insert("/cards/{publicToken}/balance".into(), json!({
            "get": with_token(operation("The card's balance", Some("cards.read"), None, ("200", Some("Balance")), &[])),
        }));
    }
    if let Some(Value::Object(schemas)) = spec.pointer_mut("/components/schemas") {
        schemas.insert("PostTransaction".into(), json!({
            "type": "object", "additionalProperties": false, "required": ["transactionType", "amount", "currencyCode"],
            "properties": {
                "transactionType": {"type": "string", "enum": ["Load", "Unload", "TransferFunds", "BalanceAdjustment", "Fee"]},
                "amount": {"oneOf": [{"type": "number"}, {"type": "string"}], "description": "positive; negative only for a BalanceAdjustment that debits"},
                "currencyCode": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                "toPublicToken": {"type": "string", "pattern": "^[0-9]{9}$", "description": "TransferFunds only"},
                "feeAmount": money.clone(),
                "feeType": {"type": "string"},
                "user": {"type": "string"},
                "description": {"type": "string"}
            }
        }));
        schemas.insert("Balance".into(), balance.clone());
        schemas.insert(
            "ReplaceCard".into(),
            json!({"type": "object", "additionalProperties": false, "properties": {
            "moveBalance": {"type": "boolean"}, "moveExpiryDate": {"type": "boolean"},
            "expiryDate": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}}}),
        );
        schemas.insert(
            "RenewCard".into(),
            json!({"type": "object", "additionalProperties": false, "properties": {
            "renewStep": {"type": "string", "enum": ["Renew", "Migrate", "RenewWithSameExpiry"]}}}),
        );
        schemas.insert("ConvertCard".into(), json!({"type": "object", "additionalProperties": false, "required": ["cardType"], "properties": {
            "cardType": {"type": "string", "enum": ["Physical"]}, "moveExpiryDate": {"type": "boolean"},
            "newExpiryDate": {"type": "string", "format": "date"}}}));
        schemas.insert("Converted".into(), json!({"type": "object", "properties": {
            "publicToken": {"type": "string"}, "cardType": {"type": "string"}, "maskedPan": {"type": "string"}, "expiryDate": {"type": "string"}}}));
        schemas.insert("Resend".into(), json!({"type": "object", "additionalProperties": false, "required": ["notificationIds"],
            "properties": {"notificationIds": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string", "format": "uuid"}}}}));
        schemas.insert(
            "Resent".into(),
            json!({"type": "object", "properties": {"resent": {"type": "integer"}}}),
        );
        schemas.insert("Notifications".into(), json!({"type": "array", "items": {"type": "object", "properties": {
            "notificationId": {"type": "string"}, "eventCode": {"type": "string"}, "publicToken": {"type": "string"},
            "status": {"type": "string", "enum": ["Pending", "Failed"]}, "attempts": {"type": "integer"},
            "nextAttempt": {"type": "string"}, "lastError": {"type": "string", "nullable": true}, "created": {"type": "string"}}}}));
        schemas.insert("Authorise".into(), json!({
            "type": "object", "additionalProperties": false, "required": ["amount", "currencyCode"],
            "properties": {
                "amount": money.clone(),
                "currencyCode": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                "merchant": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "mcc": {"type": "string", "pattern": "^[0-9]{4}$"},
                    "country": {"type": "string", "pattern": "^[A-Z]{3}$"}
                }}
            }
        }));
        schemas.insert("Authorisation".into(), json!({"type": "object", "properties": {
            "authorisationId": {"type": "string"}, "approved": {"type": "boolean"},
            "responseCode": {"type": "string"}, "responseDescription": {"type": "string"},
            "authCode": {"type": "string", "nullable": true}, "transactionId": {"type": "string"},
            "balance": balance.clone(),
        }}));
        schemas.insert("Settled".into(), json!({"type": "object", "properties": {
            "authorisationId": {"type": "string"}, "state": {"type": "string", "enum": ["Cleared", "Reversed"]},
            "transactionId": {"type": "string"}, "balance": balance.clone(),
        }}));
        schemas.insert("Posted".into(), json!({"type": "object", "properties": {
            "transaction": {"type": "array", "items": {"type": "object", "properties": {
                "transactionType": {"type": "string"}, "transactionId": {"type": "string"}, "amount": {"type": "number"},
                "currencyCode": {"type": "string"}, "publicToken": {"type": "string"}}}},
            "balance": balance,
        }}));
        schemas.insert("TransactionList".into(), json!({"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "description": {"type": "string"}, "dateTime": {"type": "string"},
            "type": {"type": "object", "properties": {"code": {"type": "string", "enum": ["L", "U", "B", "F", "A", "D", "P"]}, "description": {"type": "string"}}},
            "status": {"type": "object", "properties": {"code": {"type": "string", "enum": ["A", "S", "V", "I"]}, "description": {"type": "string"}}},
            "amount": {"type": "object", "properties": {
                "billingValue": {"type": "number"}, "billingCurrency": {"type": "string"},
                "transactionValue": {"type": "number"}, "transactionCurrency": {"type": "string"},
                "actualBalance": {"type": "number"}, "availableBalance": {"type": "number"}}},
            "processingCode": {"type": "string"}, "transactionLink": {"type": "string", "nullable": true}, "note": {"type": "string", "nullable": true}
        }}}));
    }
}

/// The document.
pub fn spec() -> Value {
    let mut spec = spec_of_cards();
    add_ledger(&mut spec);
    spec
}

/// The card calls.
fn spec_of_cards() -> Value {
    let address = json!({
        "type": "object", "additionalProperties": false,
        "required": ["addressLine1", "city", "postCode", "country"],
        "properties": {
            "addressLine1": {"type": "string", "minLength": 1, "maxLength": 100},
            "addressLine2": {"type": "string", "maxLength": 100},
            "city": {"type": "string", "minLength": 1, "maxLength": 100},
            "county": {"type": "string", "maxLength": 100},
            "postCode": {"type": "string", "minLength": 1, "maxLength": 100},
            "country": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 3166-1 alpha-3"}
        }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "certbound Cards API",
            "version": "1.0.0",
            "description": "The Thredd Cards API as certbound serves it: every call needs mutual TLS with the certificate the access token is bound to (RFC 8705) and `Authorization: Bearer`. Card status codes: 00 Active, 02 Inactive (activateNow: false), 05 Blocked, 41 Lost, 43 Stolen, 46 Closed, 83 Destroyed; 41, 43, 46 and 83 are terminal. Request bodies are read as Thredd's service reads them: property names in any case (`CardProduct` = `cardProduct`); unknown properties are refused with the property named."
        },
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/cards": {
                "post": idempotent(operation("Create a card", Some("cards.write"), Some("CreateCard"), ("201", Some("CreatedCard")), &[("422", "fulfilment on a virtual card")]))
            },
            "/cards/{publicToken}": {
                "get": with_token(operation("Get a card", Some("cards.read"), None, ("200", Some("Card")), &[])),
                "patch": idempotent(with_token(operation("Update a card", Some("cards.write"), Some("UpdateCard"), ("204", None), &[("422", "fulfilment on a virtual card")])))
            },
            "/cards/{publicToken}/status": {
                "get": with_token(operation("Get the status", Some("cards.read"), None, ("200", Some("CardStatus")), &[])),
                "put": idempotent(with_token(operation("Change the status", Some("cards.write"), Some("ChangeStatus"), ("200", Some("CardStatus")), &[("409", "a terminal status cannot change")])))
            },
            "/cards/{publicToken}/pin": {
                "get": with_token(operation("Get the PIN", Some("pin.read"), None, ("200", Some("Pin")), &[])),
                "post": idempotent(with_token(operation("Set the PIN", Some("pin.write"), Some("Pin"), ("204", None), &[])))
            },
            "/cards/{publicToken}/cvv": {
                "get": with_token(operation("Get the CVV", Some("cvv.read"), None, ("200", Some("Cvv")), &[("409", "CVV lookups are blocked")]))
            },
            "/cards/{publicToken}/cvv/status": {
                "get": with_token(operation("Get the CVV status", Some("cvv.read"), None, ("200", Some("CvvStatus")), &[])),
                "post": idempotent(with_token(operation("Block or unblock CVV lookups", Some("cvv.write"), Some("CvvStatus"), ("200", Some("CvvStatus")), &[])))
            },
            "/cards/{publicToken}/encrypted": {
                "post": with_token(operation("Get the card data encrypted to the client's key", Some("cards.encrypted"), Some("EncryptedRequest"), ("200", Some("EncryptedPayload")), &[]))
            },
            "/keys": {
                "get": operation("The Cards API's encryption and signing keys (mTLS only)", None, None, ("200", Some("Jwks")), &[])
            },
            "/cards/bulk": {
                "post": idempotent(operation("Create cards in bulk, in the background", Some("bulkcard.write"), Some("BulkRequest"), ("202", Some("BulkAccepted")), &[])),
                "get": {
                    "summary": "Get a bulk request",
                    "security": [{"bearer": ["bulkcard.read"]}],
                    "parameters": [{"name": "bulkCardRequestId", "in": "query", "required": true, "schema": {"type": "string", "format": "uuid"}}],
                    "responses": {
                        "200": {"description": "Success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BulkJob"}}}},
                        "400": {"description": "Validation error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                        "401": {"description": "Token error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                        "403": {"description": "Missing scope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                        "404": {"description": "No such request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT, certificate-bound (RFC 8705)"}},
            "parameters": {
                "publicToken": {"name": "publicToken", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{9}$"}},
                "IdempotencyKey": {"name": "IdempotencyKey", "in": "header", "required": false, "schema": {"type": "string", "format": "uuid"}, "description": "Kept one hour: the same key replays the first response; on another endpoint or with another body it is refused with 400."}
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status", "traceId", "errors"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "traceId": {"type": "string"},
                    "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
                }},
                "CardHolder": {"type": "object", "additionalProperties": false, "required": ["firstName", "lastName", "dateOfBirth"], "properties": {
                    "title": {"type": "string"}, "firstName": {"type": "string", "minLength": 1, "maxLength": 50},
                    "lastName": {"type": "string", "minLength": 1, "maxLength": 50}, "dateOfBirth": {"type": "string", "format": "date"}
                }},
                "Address": address,
                "Fulfilment": {"type": "object", "additionalProperties": false, "properties": {
                    "address": {"$ref": "#/components/schemas/Address"}, "deliveryMethod": {"type": "string"}, "carrierName": {"type": "string"}
                }},
                "CreateCard": {"type": "object", "additionalProperties": false, "required": ["cardType", "cardProduct", "customerReference", "cardHolder", "address"], "properties": {
                    "cardType": {"type": "string", "enum": ["Physical", "Virtual", "Master Virtual", "MasterVirtual"]},
                    "cardProduct": {"oneOf": [{"type": "integer", "enum": [10001, 10002, 10003]}, {"type": "string", "enum": ["10001", "10002", "10003"]}], "description": "a number, as Thredd documents it (10005), or a numeric string"},
                    "customerReference": {"type": "string", "minLength": 1, "maxLength": 50},
                    "cardHolder": {"$ref": "#/components/schemas/CardHolder"},
                    "address": {"$ref": "#/components/schemas/Address"},
                    "fulfilment": {"$ref": "#/components/schemas/Fulfilment"},
                    "activateNow": {"type": "boolean"},
                    "designId": {"type": "string"},
                    "expiryDate": {"type": "string", "format": "date"}
                }},
                "CreatedCard": {"type": "object", "properties": {
                    "publicToken": {"type": "string"}, "customerReference": {"type": "string"}, "embossName": {"type": "string"},
                    "maskedPan": {"type": "string"}, "startDate": {"type": "string"}, "expiryDate": {"type": "string"}
                }},
                "UpdateCard": {"type": "object", "additionalProperties": false, "properties": {
                    "customerReference": {"type": "string", "minLength": 1, "maxLength": 50},
                    "cardHolder": {"$ref": "#/components/schemas/CardHolder"},
                    "address": {"$ref": "#/components/schemas/Address"},
                    "fulfilment": {"$ref": "#/components/schemas/Fulfilment"},
                    "designId": {"type": "string"}
                }},
                "Card": {"type": "object", "properties": {
                    "cardType": {"type": "string"}, "publicToken": {"type": "string"}, "status": {"type": "string"},
                    "cardStatusCode": {"type": "string"}, "cardStatusDescription": {"type": "string"},
                    "balance": {"type": "object", "properties": {"currencyCode": {"type": "string"}, "cardBalance": {"type": "number"}, "pendingAmount": {"type": "number"}, "availableBalance": {"type": "number"}}},
                    "cardDetails": {"type": "object"}
                }},
                "ChangeStatus": {"type": "object", "additionalProperties": false, "properties": {
                    "cardStatusCode": {"type": "string", "enum": ["00", "02", "05", "41", "43", "46", "83"]},
                    "status": {"type": "string", "enum": ["Active", "Inactive", "Blocked", "Lost", "Stolen", "Closed", "Destroyed"]},
                    "updatedBy": {"type": "string"}, "description": {"type": "string"}
                }},
                "CardStatus": {"type": "object", "properties": {
                    "status": {"type": "string"}, "cardStatusCode": {"type": "string"}, "updated": {"type": "string"},
                    "updatedBy": {"type": "string"}, "description": {"type": "string"}
                }},
                "Pin": {"type": "object", "additionalProperties": false, "required": ["pin"], "properties": {"pin": {"type": "string", "pattern": "^[0-9]{4,12}$"}}},
                "Cvv": {"type": "object", "properties": {"cvv": {"type": "string"}, "resultStatus": {"type": "string"}}},
                "CvvStatus": {"type": "object", "additionalProperties": false, "required": ["status"], "properties": {"status": {"type": "string", "enum": ["Blocked", "Unblocked"]}}},
                "EncryptedRequest": {"type": "object", "additionalProperties": false, "required": ["key"], "properties": {"key": {"type": "string", "description": "base64(RSA-OAEP-256(encryption key of /keys, 32-byte AES key))"}}},
                "EncryptedPayload": {"type": "object", "properties": {
                    "iv": {"type": "string"}, "encryptedPayload": {"type": "string"}, "signatureOfPayloadAndIv": {"type": "string"}
                }},
                "Jwks": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
                "BulkRequest": {"type": "object", "additionalProperties": false, "required": ["cardProduct", "cardType", "quantity"], "properties": {
                    "cardProduct": {"oneOf": [{"type": "integer", "enum": [10001, 10002, 10003]}, {"type": "string", "enum": ["10001", "10002", "10003"]}], "description": "a number, as Thredd documents it (10005), or a numeric string"},
                    "cardType": {"type": "string", "enum": ["Physical", "Virtual", "Master Virtual", "MasterVirtual"]},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 50}
                }},
                "BulkAccepted": {"type": "object", "properties": {"id": {"type": "string"}}},
                "BulkJob": {"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"type": "string", "enum": ["Pending", "Processing", "Complete", "Failed"]},
                    "quantity": {"type": "integer"}, "publicTokens": {"type": "array", "items": {"type": "string"}}
                }}
            }
        }
    })
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_documented_path_is_a_route() {
        let spec = spec();
        let paths = spec["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
