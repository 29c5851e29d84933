"""Use cases of Correl-Net Studio (import, detect, correct, train, export) and the entry points
(CLI, worker) that call them. The web app calls the same functions."""
