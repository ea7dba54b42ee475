"""The engine (attention/): tiny random models and the real default pair, no app."""
