import Testing

/// The real services a test needs besides Gantry itself. `scripts/test.sh` starts them (with the
/// functions of `scripts/lib.sh` named below) and the tests find them through the variables of
/// `TestEnvironment`; a test whose variable is unset fails, it is not skipped. A suite or test
/// carries the tags of what it really uses, so a run can leave out what is not started (see
/// docs/testing.md, "Test layers"). Tests without a tag need none of these services.
extension Tag {
    /// A PostgreSQL 15 server: `GANTRY_TEST_POSTGRES_URL`, the superuser URL of a private cluster
    /// (`start_private_postgres`), in which each test creates a database of its own
    /// (`PostgresTestDatabase`).
    @Tag static var postgres: Self

    /// moto, the S3-compatible server that checks request signatures: `GANTRY_TEST_S3_ENDPOINT`,
    /// `GANTRY_TEST_S3_ACCESS_KEY_ID` and `GANTRY_TEST_S3_SECRET_ACCESS_KEY` (`start_moto`).
    @Tag static var moto: Self

    /// nanoidp, the OpenID Connect provider of the login tests: `GANTRY_TEST_OIDC_ISSUER`,
    /// `_CLIENT_ID`, `_CLIENT_SECRET`, `_MANAGEMENT_SECRET` and `_AUDIENCE` (`start_nanoidp`).
    @Tag static var nanoidp: Self

    /// llama.cpp's `llama-server` with the demo model: `GANTRY_TEST_LLAMA_SERVER` (the binary
    /// `gantry engines install llama-cpp` builds) and `GANTRY_TEST_MODEL` (the GGUF file
    /// `gantry demo-model` fetches). These tests start real engines: slow, and heavy on the CPU.
    @Tag static var llamaCpp: Self

    /// The test Kubernetes control plane, etcd, kube-apiserver and kube-scheduler
    /// (`start_kubernetes_control_plane`): `GANTRY_TEST_KUBECONFIG`, `GANTRY_TEST_KUBECONFIG_GANTRY`,
    /// `GANTRY_TEST_KUBECONFIG_LIMITED`, `GANTRY_TEST_KUBE_URL` and `GANTRY_TEST_ETCD_URL`; `kubectl`
    /// on `PATH` for the manifests' test.
    @Tag static var kubernetes: Self

    /// The test peers' Python, `GANTRY_TEST_PYTHON` (`ensure_test_peers`), running a Python peer:
    /// the official `openai` client (`Tests/openai-client/check.py`) or the stand-in kubelet
    /// (`scripts/kubernetes/standin-kubelet.py`).
    @Tag static var python: Self
}
