//! Integration-test support: servers, clients and network-namespace topologies shared by the tests and the lab.
