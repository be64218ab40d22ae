//! The rules of the scheme, as plain functions over plain data, and the service that applies
//! them with the store and the CA.
