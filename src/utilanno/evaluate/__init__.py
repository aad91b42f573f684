"""Evaluation stage (PAPER-SPEC F): corpus encoding and faiss search, BM25, TREC runs, metrics, results."""
