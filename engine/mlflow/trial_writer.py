"""The process that writes a tune's trial runs: `python trial_writer.py URI EXPERIMENT_ID`, one JSON line per
trial on stdin (name, tags, params, metrics, start and end in ms), one line back per trial on stdout
(`<number> <run id>`, or `error <number> <message>`).

Each trial is three MLflow calls (create the run, log its params and metrics in one batch, end it), some tens of
milliseconds of CPU in MLflow's store code each: in a process of their own they take none from the tune's
event loop (a thread would hold the same interpreter lock). Run as a script, it imports MLflow and nothing of
the engine; it ignores Ctrl-C (the tune's process decides when it ends: it closes stdin, and every trial sent
is written before this process exits)."""
import json
import signal
import sys


def main(uri: str, experiment_id: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for line in sys.stdin:
        trial = json.loads(line)
        try:
            run = client.create_run(experiment_id, start_time=trial["start_ms"], tags=trial["tags"],
                                    run_name=trial["name"])
            run_id = run.info.run_id
            params = [Param(k, v) for k, v in trial["params"].items()]
            metrics = [Metric(k, v, trial["end_ms"], 0) for k, v in trial["metrics"].items()]
            for i in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limit
                client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])
            client.set_terminated(run_id, "FINISHED", end_time=trial["end_ms"])
            print(trial["number"], run_id, flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the tune, which raises it
            print("error", trial["number"], f"{type(exc).__name__}: {exc}".replace("\n", " "), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
