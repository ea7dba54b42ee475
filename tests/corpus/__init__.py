"""The corpus runner (attention/corpus) and the corpus page (app/corpus)."""
