"""Contract tests: the ML Commons API facts mlsync relies on, proved against the real node.

Each test documents one behaviour of OpenSearch 2.19 + ML Commons; docs/ml-commons-notes.md
summarises them and cites the test that proves each point.
"""
