"""The real open-data files in ``../shared/realdata`` as the demo agencies' datasets.

Each entry says which agency publishes which file(s), with the descriptive metadata a steward
would enter (title, description, theme, licence from ``SOURCES.md``). Files of one entry are
ingested in order, one version each (the air-quality months show a dataset growing).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civicshare.catalog.models import DatasetCreate, Frequency, Visibility
from civicshare.catalog.tableschema import TableSchema


@dataclass(frozen=True)
class RealDataset:
    agency: str
    slug: str
    files: tuple[str, ...]  # relative to the realdata folder
    title: str
    description: str
    theme: str
    keywords: tuple[str, ...]
    license: str
    visibility: Visibility
    frequency: Frequency
    spatial: str
    temporal: tuple[dt.date, dt.date]

    @property
    def ref(self) -> str:
        return f"{self.agency}.{self.slug}"


REAL_DATASETS: tuple[RealDataset, ...] = (
    RealDataset(
        "fire_ems",
        "fire_calls",
        ("sf-fire-ems-calls/Fire_Department_Calls_for_Service.csv",),
        "Fire Department calls for service",
        "Every unit response to fire and medical calls, with dispatch, on-scene, transport and "
        "hospital times (DataSF 'Fire Department Calls for Service', 31 Dec 2016 - 7 Jan 2017).",
        "public safety",
        ("fire", "ems", "dispatch", "response times"),
        "ODC-PDDL-1.0",
        Visibility.public,
        Frequency.daily,
        "San Francisco, CA",
        (dt.date(2016, 12, 31), dt.date(2017, 1, 7)),
    ),
    RealDataset(
        "transport",
        "service_requests_311",
        ("nyc311/data/311_Service_Requests.csv",),
        "311 service requests",
        "A sample of 1,000 requests to the 311 line (street conditions, noise, parking, "
        "sanitation), 2014-2019, from NYC Open Data '311 Service Requests from 2010 to Present'.",
        "transport",
        ("311", "service requests", "streets"),
        "NYC Open Data Terms of Use",
        Visibility.public,
        Frequency.daily,
        "New York City, NY",
        (dt.date(2014, 5, 10), dt.date(2019, 9, 8)),
    ),
    RealDataset(
        "transport",
        "service_requests_2017",
        ("la311/Project/python/src/static/MyLA311_Service_Request_Data_2017_Subset.csv",),
        "MyLA311 service requests, last week of 2017",
        "9,999 requests (bulky items, graffiti, illegal dumping, encampments) with the address "
        "and council district, from City of LA Open Data 'MyLA311 Service Request Data 2017'. "
        "Shared inside the hub only: the source states no data licence.",
        "transport",
        ("311", "service requests", "graffiti", "illegal dumping"),
        "unstated (City of LA Open Data; repository GPL-3.0)",
        Visibility.hub,
        Frequency.daily,
        "Los Angeles, CA",
        (dt.date(2017, 12, 27), dt.date(2017, 12, 31)),
    ),
    RealDataset(
        "transport",
        "air_quality_pm25",
        ("nyc-airquality-nyccas/hist/csv/2025/7.csv", "nyc-airquality-nyccas/hist/csv/2025/10.csv"),
        "Real-time PM2.5 monitors, hourly",
        "Hourly fine-particle (PM2.5, µg/m³) readings from the street-level monitors of the "
        "Community Air Survey; July and October 2025, one version per month. Preliminary data. "
        "Cite: NYC DOHMH and Queens College, New York City Community Air Survey.",
        "environment",
        ("air quality", "pm2.5", "sensors"),
        "GPL-3.0",
        Visibility.public,
        Frequency.hourly,
        "New York City, NY",
        (dt.date(2025, 7, 1), dt.date(2025, 10, 31)),
    ),
    RealDataset(
        "transport",
        "air_quality_sites",
        ("nyc-airquality-nyccas/hist/csv/location.csv",),
        "PM2.5 monitor sites",
        "Where each air-quality monitor stands and when (monitors that moved appear once per "
        "period).",
        "environment",
        ("air quality", "sensors", "locations"),
        "GPL-3.0",
        Visibility.public,
        Frequency.irregular,
        "New York City, NY",
        (dt.date(2016, 1, 1), dt.date(2026, 8, 22)),
    ),
    RealDataset(
        "transport",
        "bike_counts",
        ("seattle-bike-counters/raw/58th-st.json",),
        "Bike counter, NW 58th St Greenway",
        "Hourly bicycle counts in each direction at the NW 58th St Greenway counter, 2014-2018 "
        "(Seattle DOT via data.seattle.gov).",
        "transport",
        ("bicycles", "traffic counts", "sensors"),
        "City of Seattle open data terms (repository GPL-3.0)",
        Visibility.public,
        Frequency.hourly,
        "Seattle, WA",
        (dt.date(2014, 1, 1), dt.date(2018, 6, 30)),
    ),
    RealDataset(
        "health",
        "covid_cases_by_day",
        ("nyc-doh-covid/trends/data-by-day.csv",),
        "COVID-19 cases, hospitalisations and deaths by day",
        "Daily confirmed and probable cases, hospitalisations and deaths, citywide and by "
        "borough, with 7-day averages (NYC DOHMH coronavirus-data).",
        "health",
        ("covid-19", "surveillance", "cases"),
        "unstated (NYC DOHMH public data)",
        Visibility.public,
        Frequency.daily,
        "New York City, NY",
        (dt.date(2020, 2, 29), dt.date(2025, 10, 13)),
    ),
    RealDataset(
        "health",
        "covid_by_zip",
        ("nyc-doh-covid/totals/data-by-modzcta.csv",),
        "COVID-19 cumulative counts by ZIP code area",
        "Cumulative cases, case rates and deaths per modified ZIP code tabulation area, with the "
        "neighbourhood name and population denominator (NYC DOHMH).",
        "health",
        ("covid-19", "surveillance", "zip code"),
        "unstated (NYC DOHMH public data)",
        Visibility.public,
        Frequency.weekly,
        "New York City, NY",
        (dt.date(2020, 3, 1), dt.date(2025, 10, 16)),
    ),
    RealDataset(
        "health",
        "covid_like_illness",
        ("nyc-doh-covid/trends/covid-like-illness-by-boro.csv",),
        "COVID-like illness: emergency visits and admissions by borough and age",
        "Syndromic surveillance: daily emergency-department visits and admissions for COVID-like "
        "illness per 100,000, by borough and age band. Shared with agencies inside the hub.",
        "health",
        ("syndromic surveillance", "emergency department", "covid-19"),
        "unstated (NYC DOHMH public data)",
        Visibility.hub,
        Frequency.daily,
        "New York City, NY",
        (dt.date(2020, 2, 1), dt.date(2025, 10, 15)),
    ),
    RealDataset(
        "health",
        "housing_health_indicators",
        ("nyc-housing-health/neighborhood-reports/data/viz/Housing_and_Health.json",),
        "Housing and health indicators by neighbourhood",
        "16 indicators (crowding, pests, leaks, peeling paint, elevated blood lead, asthma and "
        "heat-stress hospitalisations, child poverty, air conditioning) for 42 neighbourhoods, "
        "1999-2022 (NYC Environment & Health Data Portal).",
        "housing",
        ("housing", "environmental health", "neighbourhoods"),
        "Apache-2.0",
        Visibility.hub,
        Frequency.annual,
        "New York City, NY",
        (dt.date(1999, 1, 1), dt.date(2022, 12, 31)),
    ),
)


def default_realdata_dir() -> Path:
    """$CIVICSHARE_REALDATA, else ``../shared/realdata`` beside the repository (as in CI)."""
    configured = os.environ.get("CIVICSHARE_REALDATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3].parent / "shared" / "realdata"


def reviewed_schema(dataset: RealDataset, root: Path) -> TableSchema:
    """The inferred schema as the steward accepts it.

    A file the source already publishes as open data has nothing left to protect, so its fields
    are classified ``public`` (their ``pii`` kinds stay, to say what they contain). Hub-only
    datasets keep the inferred classification.
    """
    from civicshare.ingest.infer import infer_schema_dict

    proposal: dict[str, Any] = infer_schema_dict(root / dataset.files[0])
    if dataset.visibility is Visibility.public:
        for field in proposal["fields"]:
            field["classification"] = "public"
    return TableSchema.model_validate(proposal)


def dataset_create(dataset: RealDataset, table_schema: TableSchema, contact: str) -> DatasetCreate:
    return DatasetCreate(
        agency=dataset.agency,
        slug=dataset.slug,
        title=dataset.title,
        description=dataset.description,
        keywords=list(dataset.keywords),
        theme=dataset.theme,
        license=dataset.license,
        contact=contact,
        spatial=dataset.spatial,
        temporal_start=dataset.temporal[0],
        temporal_end=dataset.temporal[1],
        frequency=dataset.frequency,
        visibility=dataset.visibility,
        table_schema=table_schema,
    )
