//! `clawgate-egress`: the local egress proxy every LLM request is forced through (issue #5).
//! Under construction.
