"""Launcher for the local AWS emulator: moto 5.2.5's server, over TLS, with our patches.

This is moto's own `moto_server -H HOST -p PORT -c CERT -k KEY` (moto/server.py: main), with
`patches.apply()` called before the WSGI app is built. Run it through start.sh, which makes the
certificates, waits until the server answers and writes the env file.

    python server.py --host 127.0.0.1 --port 14566 --cert server.crt --key server.key [--no-patches]

--no-patches runs plain moto 5.2.5 the same way (used to measure moto's own behaviour).
"""

import argparse
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED_MOTO = "5.2.5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM server certificate (chain)")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--no-patches", action="store_true", help="run moto unpatched")
    args = parser.parse_args()

    # moto builds some URLs (SQS queue URLs, ...) from MOTO_PORT, as moto_server does.
    os.environ["MOTO_PORT"] = str(args.port)
    # AWS managed IAM policies (arn:aws:iam::aws:policy/...) exist on AWS; moto only has them
    # with this setting (without it AttachRolePolicy of AWSLambdaBasicExecutionRole is NoSuchEntity).
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

    import moto

    if moto.__version__ != EXPECTED_MOTO:
        sys.exit(f"server.py: moto {moto.__version__} imported from {moto.__file__}; "
                 f"expected {EXPECTED_MOTO} (run scripts/emulator/install.sh and use its venv)")

    from werkzeug.serving import run_simple
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    if args.no_patches:
        print("server.py: moto %s UNPATCHED" % moto.__version__, file=sys.stderr, flush=True)
    else:
        sys.path.insert(0, HERE)
        import patches

        applied = patches.apply()
        print("server.py: moto %s with patches: %s" % (moto.__version__, ", ".join(applied)),
              file=sys.stderr, flush=True)

    # As moto_server: exit cleanly on SIGTERM/SIGINT (stop.sh sends SIGTERM).
    def _exit(signum, frame):  # noqa: ARG001
        sys.exit(0)

    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto_server: error responses carry moto's traceback text
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        ssl_context=(args.cert, args.key),
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
