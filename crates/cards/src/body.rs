//! Request bodies, read as Thredd's service reads them (DESIGN.md section 4).
//!
//! Thredd's Cards API is an ASP.NET service: its JSON binder matches property names without
//! regard to case, and its documentation uses both `cardProduct` and `CardProduct`. certbound
//! does the same, and still refuses a property that no request type knows, naming it.
//!
//! The canonical names are not written down twice: they are read from the request types' own
//! `Deserialize` implementations ([`field_names`]), so a field added to a type is at once
//! accepted in any case.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::CardsError;
use crate::model::{
    Address, Authorise, BulkRequest, CardHolder, ChangeStatus, Clear, CreateCard, CvvStatus,
    EncryptedRequest, Fulfilment, Merchant, PostTransaction, SetPin, UpdateCard,
};

/// Parses a JSON body into `T`: property names in any case, the field of any error named
/// (`cardHolder.firstName`).
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CardsError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        CardsError::field("body", format!("the body is not valid JSON: {error}"))
    })?;
    let value = canonical(value, "")?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." || path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        CardsError::field(&field, error.inner().to_string())
    })
}

/// Every property name a Cards request type declares, by its lowercase form.
static CANONICAL: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
    [
        field_names::<CreateCard>(),
        field_names::<CardHolder>(),
        field_names::<Address>(),
        field_names::<Fulfilment>(),
        field_names::<UpdateCard>(),
        field_names::<ChangeStatus>(),
        field_names::<SetPin>(),
        field_names::<CvvStatus>(),
        field_names::<EncryptedRequest>(),
        field_names::<BulkRequest>(),
        field_names::<PostTransaction>(),
        field_names::<Authorise>(),
        field_names::<Merchant>(),
        field_names::<Clear>(),
        field_names::<crate::webhooks::Resend>(),
        field_names::<crate::model::ReplaceCard>(),
        field_names::<crate::model::RenewCard>(),
        field_names::<crate::model::ConvertCard>(),
    ]
    .into_iter()
    .flatten()
    .map(|name| (name.to_ascii_lowercase(), *name))
    .collect()
});

/// Renames every object key that matches a known property name in another case to its
/// canonical spelling; unknown keys stay as sent, for the type to refuse by name. Two keys that
/// name one property (`cardProduct` and `CardProduct`) are refused.
fn canonical(value: Value, path: &str) -> Result<Value, CardsError> {
    match value {
        Value::Object(object) => {
            let mut renamed = Map::with_capacity(object.len());
            for (key, inner) in object {
                let name = CANONICAL
                    .get(&key.to_ascii_lowercase())
                    .map_or(key, |canonical| (*canonical).to_owned());
                let field = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                if renamed.contains_key(&name) {
                    return Err(CardsError::field(
                        &field,
                        format!(
                            "`{name}` is given more than once (property names are read without regard to case)"
                        ),
                    ));
                }
                let inner = canonical(inner, &field)?;
                renamed.insert(name, inner);
            }
            Ok(Value::Object(renamed))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| canonical(item, &format!("{path}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// The property names a struct's derived `Deserialize` declares (its `rename`s applied).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that answers nothing and notes the field list serde hands it.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field names noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// `cardProduct`: Thredd documents it as a number (`10005`); certbound also takes the numeric
/// string its earlier clients send (`"10005"`).
pub(crate) fn product_code<'de, D: de::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    struct Code;

    impl Visitor<'_> for Code {
        type Value = String;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a card product number such as 10001 (or \"10001\")")
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }

        fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
            u64::try_from(number)
                .map(|number| number.to_string())
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(number), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            if !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) {
                Ok(text.to_owned())
            } else {
                Err(E::invalid_value(de::Unexpected::Str(text), &self))
            }
        }
    }

    deserializer.deserialize_any(Code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_come_from_the_types() {
        assert!(field_names::<CreateCard>().contains(&"cardProduct"));
        assert!(field_names::<Address>().contains(&"addressLine1"));
        assert_eq!(CANONICAL.get("cardholder"), Some(&"cardHolder"));
    }

    #[test]
    fn a_pascal_case_body_with_a_numeric_product_parses() {
        let body = br#"{"CardType":"MasterVirtual","CardProduct":10003,"CustomerReference":"r",
            "CardHolder":{"FirstName":"Ada","LASTNAME":"Lovelace","dateofbirth":"1990-12-10"},
            "Address":{"AddressLine1":"1 High Street","City":"London","PostCode":"EC1A 1BB","Country":"GBR"}}"#;
        let card: CreateCard = parse(body).unwrap();
        assert_eq!(card.card_product, "10003");
        assert_eq!(card.card_type, crate::model::CardType::MasterVirtual);
        assert_eq!(card.card_holder.last_name, "Lovelace");
    }

    #[test]
    fn unknown_and_doubled_properties_are_named() {
        let error = parse::<SetPin>(br#"{"pin":"1234","Colour":"red"}"#).unwrap_err();
        assert!(format!("{error:?}").contains("Colour"), "{error:?}");
        let error = parse::<SetPin>(br#"{"pin":"1234","PIN":"5678"}"#).unwrap_err();
        assert!(
            format!("{error:?}").contains("`pin` is given more than once"),
            "{error:?}"
        );
    }

    #[test]
    fn a_product_is_a_number_or_digits() {
        for bad in [r#""ten""#, "-1", "10001.5", r#""""#, "true"] {
            let body = format!(r#"{{"cardProduct":{bad},"cardType":"Virtual","quantity":1}}"#);
            let error = parse::<BulkRequest>(body.as_bytes()).unwrap_err();
            assert!(
                format!("{error:?}").contains("cardProduct"),
                "{bad}: {error:?}"
            );
        }
    }
}
