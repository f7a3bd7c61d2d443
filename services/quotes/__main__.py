from services.quotes.app import wire
from shared.runtime.service import serve

serve("quotes", wire, title="xo-reseller quotes")
