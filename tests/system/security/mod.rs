//! Attacks on the system, each performed through the HTTP API or the worker against real
//! services, each refused (issue 12, DESIGN.md "Abuse limits", medical secrecy, roles).
//! Every test here fails on the code before its defence was built.

mod bodies;
mod crm;
mod demo;
mod devices;
mod medical;
mod metrics;
mod pages;
mod retention;
mod roles;
mod scans;
mod sign_in;
mod tokens;
