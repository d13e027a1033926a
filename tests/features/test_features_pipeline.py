"""What the Ray Data actors inherit from the driver's environment."""
from cortexzoo.core.raysetup import worker_env


def test_worker_env_forwards_store_settings_but_not_credential_files(monkeypatch):
    for k in ("AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
              "GOOGLE_APPLICATION_CREDENTIALS", "CORTEXZOO_S3_RETRIES", "HOME_GROWN"):
        monkeypatch.setenv(k, "v-" + k)
    env = worker_env()
    for k in ("AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
              "CORTEXZOO_S3_RETRIES"):
        assert env[k] == "v-" + k
    # a key file's path means nothing on another node; workers use their own account
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert "HOME_GROWN" not in env
