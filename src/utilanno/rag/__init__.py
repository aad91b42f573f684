"""RAG stage (PAPER-SPEC G): answers from each retriever's top passages, QA metrics, BERTScore."""
