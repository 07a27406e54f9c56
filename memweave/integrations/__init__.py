"""Adapters that plug memweave into agent frameworks; each lives in its own module.

| module | framework | extra |
|---|---|---|
| `memweave.integrations.agent_framework` | Microsoft Agent Framework | `agent-framework` |
| `memweave.integrations.autogen` | AutoGen (autogen-core 0.4+) | `autogen` |
| `memweave.integrations.langchain` | LangChain (langchain-core) | `langchain` |
| `memweave.integrations.langgraph` | LangGraph (checkpointer and store) | `langgraph` |

This package imports no framework: import the module for yours, e.g.
`from memweave.integrations.langchain import MemweaveChatMessageHistory`. A module whose
framework is missing raises `MissingDependency` naming the extra to install.
"""

from __future__ import annotations

__all__: list[str] = []
