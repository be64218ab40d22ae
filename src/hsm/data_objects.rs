//! Small private data objects (`CKO_DATA`) in the token: values certgate keeps where the
//! database's credentials cannot reach (the audit anchor). Read by label; written by
//! creating the new object before destroying the old ones, so a failure in between leaves
//! two values (the reader chooses), never none.
//!
//! What this module must not do: touch key objects, or log a value.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::ckr::call;
use super::pool::OpError;

/// `CKA_APPLICATION` of every data object certgate writes.
const APPLICATION: &[u8] = b"certgate";

fn template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

fn find(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, OpError> {
    Ok(call(
        "C_FindObjects",
        session.find_objects(&template(label)),
    )?)
}

/// The values of every data object labelled `label` (usually one; none before the first
/// write).
pub(crate) fn read(session: &Session, label: &str) -> Result<Vec<Vec<u8>>, OpError> {
    let mut values = Vec::new();
    for handle in find(session, label)? {
        let attrs = call(
            "C_GetAttributeValue",
            session.get_attributes(handle, &[AttributeType::Value]),
        )?;
        values.extend(attrs.into_iter().filter_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        }));
    }
    Ok(values)
}

/// Replaces the value of the data object labelled `label`: a private token object, readable
/// only after login.
pub(crate) fn write(session: &Session, label: &str, value: &[u8]) -> Result<(), OpError> {
    let old = find(session, label)?;
    let mut attrs = template(label);
    attrs.extend([
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(APPLICATION.to_vec()),
        Attribute::Value(value.to_vec()),
    ]);
    call("C_CreateObject", session.create_object(&attrs))?;
    for handle in old {
        call("C_DestroyObject", session.destroy_object(handle))?;
    }
    Ok(())
}
