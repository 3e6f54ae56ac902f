"""``python -m flor ...`` is ``flor ...`` (FlorDB users type ``python -m flordb``)."""

from flor_cli.main import main

if __name__ == "__main__":
    main()
