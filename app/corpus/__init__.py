"""The corpus page (/corpus/): what fine-tuning changed over a whole corpus, linked to single examples."""
