"""The store: experiments the MLflow UI opens on its runs table, new or made by an older
harness."""

from mlflow.tracking import MlflowClient

from harness.run.store import EXPERIMENT_KIND, RUNS_VIEW, Store


def test_experiments_are_tagged_for_the_runs_view(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(store.uri)
    new = store.experiment_id("fresh")
    assert client.get_experiment(new).tags[EXPERIMENT_KIND] == RUNS_VIEW
    old = client.create_experiment("older")  # as an earlier harness made it: no kind tag
    assert EXPERIMENT_KIND not in client.get_experiment(old).tags
    assert store.experiment_id("older") == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND] == RUNS_VIEW
